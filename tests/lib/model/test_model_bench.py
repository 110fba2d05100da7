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
