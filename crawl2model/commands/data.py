"""``crawl2model inspect`` and ``crawl2model verify``: look at a run through its manifests."""

from __future__ import annotations

import argparse
import json
import sys

from crawl2model.commands.argtypes import json_object


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print the per-stage funnel of a run dir")
    p.add_argument("run_dir")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_inspect)
    v = sub.add_parser("verify", help="re-check every manifest of a run; exit 1 naming any bad shard")
    v.add_argument("run_dir")
    v.set_defaults(func=_verify)
    for parser in (p, v):
        parser.add_argument("--storage-options", type=json_object, default={}, metavar="JSON",
                            help='fsspec options for a remote run dir, e.g. \'{"client_kwargs": {"endpoint_url": "..."}}\'')


def _no_shards(fs, path: str) -> None:
    from pipeline_lib import report

    below = report.run_dirs_below(fs, path)
    hint = f"; run dirs below it: {', '.join(below[:10])}{' ...' if len(below) > 10 else ''}" if below else ""
    print(f"error: no shards under {path}{hint}", file=sys.stderr)


def _inspect(args: argparse.Namespace) -> int:
    from pipeline_lib import report, shards

    fs = shards.filesystem(args.run_dir, args.storage_options)
    rows = report.funnel(fs, args.run_dir)
    if not rows:  # a folder of shards itself (e.g. an ingest-warc --out), not a run dir
        row = report.stage_row(fs, args.run_dir, args.run_dir.rstrip("/").rsplit("/", 1)[-1])
        rows = [row] if row else []
    if not rows:
        _no_shards(fs, args.run_dir)
        return 1
    if args.json:
        json.dump({"run_dir": args.run_dir, "stages": rows}, sys.stdout)
        print()
    else:
        print(report.funnel_text(rows))
        for stage in report.stale_stages(fs, args.run_dir):
            print(f"note: {stage} is left from an earlier run; this run's config skips it", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pipeline_lib import report, shards

    fs = shards.filesystem(args.run_dir, args.storage_options)
    if report.has_shards(fs, args.run_dir):
        problems = report.verify_run(fs, args.run_dir)
        for note in report.unfinished_shards(fs, args.run_dir):  # not damage: said, not failed
            print(f"note: {note}", file=sys.stderr)
    elif shards.list_shards(fs, args.run_dir):  # a folder of shards itself
        problems = shards.verify_stage_dir(fs, args.run_dir)
    else:
        _no_shards(fs, args.run_dir)
        return 1
    for p in problems:
        print(p)
    if problems:
        print(f"verify: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("verify: all shards match their manifests")
    return 0
