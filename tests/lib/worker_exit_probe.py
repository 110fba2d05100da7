"""Run by tests/lib/test_workers.py in its own interpreter: a pool worker prints without flushing,
keeps an object whose finaliser would only run in Python's teardown, and the pool is shut down."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


class _Marker:
    def __init__(self, path: str):
        self.path = path

    def __del__(self):
        Path(self.path).write_text("torn down")


_kept = None


def work(marker_path: str) -> int:
    import logging
    import os

    global _kept
    _kept = _Marker(marker_path)
    print("printed-by-the-worker", end="")  # stdout is a pipe here: block-buffered, not flushed yet
    logging.basicConfig(filename=marker_path + ".log", level=logging.INFO)
    logging.getLogger("probe").info("logged-by-the-worker")
    return os.getpid()


if __name__ == "__main__":
    from pipeline_lib import workers

    pid = workers.call(1, work, sys.argv[1])
    processes = list(workers.get_pool(1)._processes.values())
    workers.shutdown()
    print(f"\nworker {pid} exit codes {[p.exitcode for p in processes]}")
