"""The train flow's end: a run with no validation part (val_fraction 0) finishes, not a TypeError
after training (its summary line formatted val_loss None), which failed the whole pipeline run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import yaml

from tests.e2e.support import REPO, cli_env


def test_train_flow_without_a_validation_part_completes(tmp_path):
    run_dir = tmp_path / "data" / "c2m" / "p1"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "run": {"name": "c2m", "partition": "p1", "data_root": str(tmp_path / "data")},
        "train": {"preset": "tiny", "max_steps": 3, "batch_size": 2, "block_size": 16, "device": "cpu",
                  "val_fraction": 0.0}}))
    script = textwrap.dedent(f"""
        from tests.lib.model.conftest import write_token_shards
        docs = [[i % 200 for i in range(d, d + 60)] + [256] for d in range(40)]
        write_token_shards({str(run_dir / "07_tokens")!r}, docs, {{"kind": "bytes"}})
        from flows.train import train_flow
        result = train_flow({str(config)!r})
        print("RESULT", result["steps"], result["val_loss"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 3 None" in proc.stdout
    assert "val n/a" in proc.stderr
    assert (run_dir / "08_train" / "done.json").is_file()
