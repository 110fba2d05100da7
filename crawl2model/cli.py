"""Entry point of the ``crawl2model`` console script."""

from __future__ import annotations

import argparse
import importlib
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


def main(argv: list[str] | None = None) -> int:
    configure_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # known, user-facing errors print one line, not a traceback
        from pipeline_lib.config import ConfigError
        from pipeline_lib.shards import ShardError

        if isinstance(e, (ConfigError, ShardError, FileNotFoundError, ValueError)) and not getattr(args, "debug", False):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
