"""bench/train_gpu.py stays runnable where there is no GPU (its CPU smoke mode)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_gpu_bench_cpu_smoke_prints_one_json_object_last(repo_root):
    proc = subprocess.run([sys.executable, str(repo_root / "bench" / "train_gpu.py"), "--cpu-smoke", "--steps", "2"],
                          capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["preset"] == "tiny" and result["device"] == "cpu" and result["timed_steps"] == 2
    assert result["tokens_per_s"] > 0 and result["mfu"] is None  # no peak FLOP/s known for a CPU
    assert list(result)[-2:] == ["tokens_per_s", "mfu"]


@pytest.mark.slow
def test_gpu_bench_loop_mode_runs_train_on_synthetic_shards(repo_root):
    proc = subprocess.run([sys.executable, str(repo_root / "bench" / "train_gpu.py"), "--cpu-smoke", "--loop", "--steps", "2"],
                          capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mode"] == "loop" and result["tokens_per_s"] > 0 and result["flops_per_token"] > 0


def test_id_tokenizer_round_trips_bare_ids():
    from pipeline_lib.model.sample import tokenizer_from_spec

    tok = tokenizer_from_spec({"kind": "ids", "n_vocab": 100})
    assert tok.encode(" 5 17 99") == [5, 17, 99] and tok.decode([5, 17]) == " 5 17"
    with pytest.raises(ValueError, match="must lie in"):
        tok.encode("100")
