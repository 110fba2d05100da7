"""A process pool for shard work, started once per run and reused by every stage.

Prefect tasks run in threads (cheap to start, cheap to wait); each task hands its shard to this
pool, so CPU-bound stages use every core and heavy models (fastText, presidio, tokenizers) load
once per worker process for the whole run instead of once per stage. Workers are spawned, not
forked: the parent holds Prefect's threads and event loop, which do not survive a fork.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_size = 0


def _init_worker() -> None:
    import signal

    # Each worker is one core's worth of work: keep native libraries from oversubscribing.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # A Ctrl-C reaches the workers too: they end without a KeyboardInterrupt traceback each (the
    # parent reports the interruption; an unfinished shard is redone by the next run).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    import atexit

    atexit.register(_skip_interpreter_teardown)


def _skip_interpreter_teardown() -> None:
    """A worker's last act (atexit, once the pool sent its stop sentinel): flush, then leave at once.

    Python's teardown of a worker (freeing fastText, presidio, tokenizer and Arrow state module by
    module) took 0.6-1.3 s after every run's last shard, and the run waited for it in
    ``shutdown``. Nothing in a worker needs it: a shard is complete on disk before its task
    returns, and results go back to the parent synchronously. Buffered output and log handlers
    are flushed first, so nothing printed is lost.
    """
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(0)


def get_pool(size: int) -> ProcessPoolExecutor:
    global _pool, _size
    with _lock:
        if _pool is None or _size != size:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker)
            _size = size
        return _pool


def submit(size: int, fn: Callable[..., Any], *args: Any) -> Future:
    return get_pool(size).submit(fn, *args)


def call(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in the pool and wait (``size`` = 0 runs it inline in this process)."""
    if size <= 0:
        return fn(*args)
    return submit(size, fn, *args).result()


def shutdown() -> None:
    """Stop the pool once its running shards are done; while an interrupt (Ctrl-C, a SIGTERM, which
    Prefect raises as TerminationSignal) unwinds through the caller, stop it now instead: a SIGTERM
    reaches only the parent, and waiting for every shard in flight outlasted `docker stop`'s grace."""
    import sys

    in_flight = sys.exc_info()[0]
    if in_flight is not None and (issubclass(in_flight, KeyboardInterrupt) or in_flight.__name__ == "TerminationSignal"):
        terminate()
        return
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def terminate() -> None:
    """Stop the workers now, not after their current shards (an interrupted run)."""
    global _pool
    with _lock:
        if _pool is not None:
            for process in list(getattr(_pool, "_processes", {}).values()):
                process.terminate()
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def _import_stages() -> int:
    import pipeline_lib.pipeline  # noqa: F401  (the modules every shard task needs)
    import pipeline_lib.stage  # noqa: F401

    return os.getpid()


def warm_up(cfg) -> None:
    """Start the pool's processes now (spawning and importing take seconds), without waiting."""
    if cfg.run.task_runner == "process":
        for _ in range(cfg.run.workers):
            submit(cfg.run.workers, _import_stages)
