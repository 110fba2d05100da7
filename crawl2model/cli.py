"""Entry point of the ``crawl2model`` console script."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from crawl2model.commands import MODULES
from crawl2model.env import configure_environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crawl2model", description="Turn the web into a trained language model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub)
    return parser


_signalled: list[int] = []  # SIGINT / SIGTERM received by the console script


def _on_signal(signum, frame) -> None:
    _signalled.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the console script itself, not a caller in the same process (tests)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)  # Prefect puts its own in place while a flow runs
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is answered below
        return rc
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # another pipe (a worker's): an error like any other, said below
        # The reader went away (`inspect --json | head`): stop quietly, as command-line tools do,
        # with the status a SIGPIPE gives; stdout goes to /dev/null so the exit's flush is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if argv is None:
            _exit_now(143 if signal.SIGTERM in _signalled else 130)
        return 130
    except BaseException as e:
        # After a Ctrl-C the embedded server is gone too (same process group), so Prefect's attempt
        # to record the crash ends in a connection error; a SIGTERM inside a flow is Prefect's
        # TerminationSignal. Either way: an interruption, not an error to print.
        if argv is None and (_signalled or type(e).__name__ == "TerminationSignal"):
            print("interrupted", file=sys.stderr)
            _exit_now(130 if _signalled and _signalled[0] == signal.SIGINT else 143)
        from pipeline_lib.config import ConfigError
        from pipeline_lib.shards import ShardError, is_storage_error

        # Known, user-facing errors print one line, not a traceback: bad config or data, a path that
        # is missing or not a file, storage that cannot be reached or refuses the credentials.
        storage = is_storage_error(e)
        if (isinstance(e, (ConfigError, ShardError, OSError, ValueError)) or storage) and not getattr(args, "debug", False):
            print(f"error: {'storage: ' if storage else ''}{type(e).__name__ + ': ' if storage else ''}{e}",
                  file=sys.stderr)
            return 2
        raise


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # no usable stdout at all: nothing to say anything on


def _exit_now(code: int) -> None:
    """Leave at once after an interrupt: stop the embedded Prefect server and the worker pool
    ourselves, then skip the interpreter's exit handlers. Prefect's would try to deliver the run's
    last logs and events to that server, which a Ctrl-C has already stopped, for five minutes;
    and a SIGTERM to this process alone left the server running with no parent."""
    try:
        if "pipeline_lib.workers" in sys.modules:
            sys.modules["pipeline_lib.workers"].terminate()
        server = sys.modules.get("prefect.server.api.server")
        if server is not None:
            for instance in list(server.SubprocessASGIServer._instances.values()):
                instance.stop()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
