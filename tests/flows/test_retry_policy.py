"""Which failures a task retries: what can succeed a second time (I/O, a busy dedup index), not bad data."""

from __future__ import annotations

import pickle

import pytest

from pipeline_lib.dedup.index import IndexBusy
from pipeline_lib.shards import ShardError
from pipeline_lib.stage import ContractError
from tasks.retry import is_retryable


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
