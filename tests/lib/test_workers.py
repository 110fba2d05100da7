"""The shard worker pool (pipeline_lib.workers)."""

import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("worker_exit_probe.py")


def test_a_worker_leaves_without_python_teardown_but_loses_no_output(tmp_path):
    # Teardown of a worker that had loaded the stage models took 0.6-1.3 s at the end of every run.
    # A worker now flushes and leaves at once: what it printed or logged still arrives, it exits 0,
    # and no finaliser of module teardown runs.
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, str(PROBE), str(marker)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "printed-by-the-worker" in proc.stdout
    assert "logged-by-the-worker" in (tmp_path / "marker.log").read_text()
    assert "exit codes [0]" in proc.stdout, proc.stdout
    assert not marker.exists(), "the worker went through Python's teardown"
