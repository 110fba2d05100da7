"""A corrupt, empty or foreign checkpoint file is a one-line error (exit 2), never a traceback."""

from __future__ import annotations

import pytest
import torch

from crawl2model.cli import main
from pipeline_lib.model.sample import load_checkpoint
from tests.e2e.support import run_cli


@pytest.mark.parametrize("command, content", [("sample", b"\x00garbage, not a torch file\xff" * 10),
                                              ("next-token", b"")])
def test_corrupt_or_empty_checkpoint_via_the_cli(tmp_path, command, content):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(content)
    done = run_cli([command, str(ckpt), "hello"], tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{ckpt}: not a crawl2model checkpoint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("payload", [{"weights": torch.zeros(2)}, [1, 2, 3],
                                     {"model_config": {"n_layer": 1}, "model": {"x": torch.zeros(1)},
                                      "tokenizer": {"kind": "bytes"}},
                                     {"model_config": {}, "model": {}, "tokenizer": None}])
def test_a_torch_file_of_the_wrong_shape_is_not_a_checkpoint(tmp_path, capsys, payload):
    ckpt = tmp_path / "ckpt.pt"
    torch.save(payload, ckpt)
    with pytest.raises(ValueError, match="not a crawl2model checkpoint"):
        load_checkpoint(str(ckpt), device="cpu")
    assert main(["sample", str(ckpt), "x"]) == 2
    assert "not a crawl2model checkpoint" in capsys.readouterr().err
