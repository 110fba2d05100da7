"""Which failures a task retries: what can succeed a second time (I/O, a busy dedup index), not bad data."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from pipeline_lib.dedup.index import IndexBusy
from pipeline_lib.shards import ShardError
from pipeline_lib.stage import ContractError
from tasks.retry import is_retryable
from tests.e2e.support import REPO, cli_env


@pytest.mark.parametrize("exc", [ConnectionError("reset"), TimeoutError("read"), OSError(28, "No space left"),
                                 IndexBusy("dedup index held by another run")])
def test_transient_failures_are_retried(exc):
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", [ShardError("checksum mismatch"), ContractError("missing column"),
                                 ValueError("bad config"), FileNotFoundError("gone"), PermissionError("denied"),
                                 RuntimeError("bug")])
def test_failures_a_retry_cannot_fix_are_not(exc):
    assert not is_retryable(exc)


def test_index_busy_survives_the_trip_back_from_a_worker_process():
    back = pickle.loads(pickle.dumps(IndexBusy("held for more than 3600 s")))
    assert isinstance(back, IndexBusy) and is_retryable(back) and "3600" in str(back)


def test_prefect_retries_a_full_disk_once_and_never_a_corrupt_shard(tmp_path):
    """The shard tasks' own options (SHARD_TASK, delays set to 0) on the embedded Prefect: the retry
    condition sees the task's real exception through Prefect's state, not just the predicate."""
    proc = subprocess.run([sys.executable, "-m", "tests.flows.retry_probe"], cwd=REPO, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["attempts"] == {"disk_full_once": 2, "corrupt_shard": 1}, out
    assert out["io"] == {"state": "COMPLETED", "result": "written"}, out
    assert out["corrupt"]["state"] == "FAILED" and "checksum mismatch" in out["corrupt"]["error"], out
