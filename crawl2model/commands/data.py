"""``crawl2model inspect`` and ``crawl2model verify``: look at a run through its manifests."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print the per-stage funnel of a run dir")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_inspect)
    v = sub.add_parser("verify", help="re-check every manifest of a run; exit 1 naming any bad shard")
    v.add_argument("run_dir")
    v.set_defaults(func=_verify)
    for parser in (p, v):
        parser.add_argument("--storage-options", type=json.loads, default={}, metavar="JSON",
                            help='fsspec options for a remote run dir, e.g. \'{"client_kwargs": {"endpoint_url": "..."}}\'')


def _inspect(args: argparse.Namespace) -> int:
    from pipeline_lib import report, shards

    fs = shards.filesystem(args.run_dir, args.storage_options)
    rows = report.funnel(fs, args.run_dir)
    if not rows:
        print(f"error: no shards under {args.run_dir}", file=sys.stderr)
        return 1
    if args.json:
        json.dump({"run_dir": args.run_dir, "stages": rows}, sys.stdout)
        print()
    else:
        print(report.funnel_text(rows))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipeline_lib import report, shards

    fs = shards.filesystem(args.run_dir, args.storage_options)
    if not report.has_shards(fs, args.run_dir):
        print(f"error: no shards under {args.run_dir}", file=sys.stderr)
        return 1
    problems = report.verify_run(fs, args.run_dir)
    for p in problems:
        print(p)
    if problems:
        print(f"verify: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("verify: all shards match their manifests")
    return 0
