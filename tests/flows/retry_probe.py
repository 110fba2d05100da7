"""Two tiny flows on the embedded Prefect, their tasks built with the shard tasks' own options.

    python -m tests.flows.retry_probe

One task fails once with a full disk (OSError 28) and then succeeds; the other fails with a corrupt
shard (ShardError). Prints, as JSON, how many times each task ran and the final state of each flow.
The tests start this in a subprocess with a private PREFECT_HOME (tests/flows/test_retry_policy.py).
"""

from __future__ import annotations

import errno
import json


def main() -> None:
    from crawl2model.env import configure_environment

    configure_environment()
    from prefect import flow, task

    from pipeline_lib.shards import ShardError
    from tasks.shard_tasks import SHARD_TASK

    options = {**SHARD_TASK, "retry_delay_seconds": 0}  # the real retry policy, without the waits
    attempts = {"disk_full_once": 0, "corrupt_shard": 0}

    @task(name="disk-full-once", **options)
    def disk_full_once() -> str:
        attempts["disk_full_once"] += 1
        if attempts["disk_full_once"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return "written"

    @task(name="corrupt-shard", **options)
    def corrupt_shard() -> str:
        attempts["corrupt_shard"] += 1
        raise ShardError("part-00000.parquet: checksum mismatch")

    @flow(name="retry-probe-io")
    def io_flow() -> str:
        return disk_full_once()

    @flow(name="retry-probe-corrupt")
    def corrupt_flow() -> str:
        return corrupt_shard()

    io_state = io_flow(return_state=True)
    corrupt_state = corrupt_flow(return_state=True)
    print(json.dumps({
        "attempts": attempts,
        "io": {"state": io_state.type.value, "result": io_state.result(raise_on_failure=False)},
        "corrupt": {"state": corrupt_state.type.value,
                    "error": repr(corrupt_state.result(raise_on_failure=False))},
    }))


if __name__ == "__main__":
    main()
