"""`crawl2model run` whose only shard sleeps a minute in the worker pool, for the SIGTERM test in
tests/e2e/test_interrupt.py (the same ``try: ... finally: workers.shutdown()`` as the flow)."""

import sys
import time


def _run(args) -> int:
    from pipeline_lib import workers

    try:
        print("shard running", file=sys.stderr, flush=True)
        workers.call(1, time.sleep, 60)
    finally:
        workers.shutdown()
    return 0


if __name__ == "__main__":
    import crawl2model.commands.run as run_command

    run_command._run = _run
    sys.argv = ["crawl2model", "run", "--config", "unused.yaml"]
    from crawl2model.cli import main

    sys.exit(main())
