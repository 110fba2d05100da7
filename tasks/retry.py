"""Which failures are worth a retry: I/O (disk, network, object store), nothing else."""

from __future__ import annotations

from pipeline_lib.shards import ShardError
from pipeline_lib.stage import ContractError

NEVER_RETRY = (ShardError, ContractError, ValueError, TypeError, KeyError, FileNotFoundError, PermissionError,
               IsADirectoryError, NotADirectoryError)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) and not isinstance(exc, NEVER_RETRY)


def retry_on_io(task, task_run, state) -> bool:
    try:
        state.result()
    except BaseException as exc:  # the task's own exception, re-raised by the state
        return is_retryable(exc)
    return False
