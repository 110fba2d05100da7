"""``crawl``, ``ingest-warc``, ``ingest-docs``: get pages or documents into shards.

    crawl2model crawl --seed URL [--seed URL ...] --out DIR [--max-pages N] [--max-depth N]
                      [--delay SECONDS] [--allow-private HOST ...]
    crawl2model ingest-warc PATH_OR_URL [...] --out DIR [--workers N]
    crawl2model ingest-docs PATH_OR_URL [...] --out DIR [--text-column text --url-column url] [--workers N]

Each writes shards (``part-NNNNN.parquet`` + manifest, failures in ``_rejected/``) straight into
DIR, prints a one-line JSON summary and is safe to rerun: finished work is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys

from crawl2model.commands.argtypes import at_least


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crawl", help="crawl seed URLs politely into page shards")
    p.add_argument("--seed", action="append", required=True, metavar="URL", help="start URL (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (local path or fsspec URL)")
    p.add_argument("--config", metavar="YAML", help="pipeline config whose crawl section is the base")
    p.add_argument("--max-pages", type=int, metavar="N")
    p.add_argument("--max-depth", type=int, metavar="N")
    p.add_argument("--delay", type=float, metavar="SECONDS", help="politeness delay per host")
    p.add_argument("--concurrency", type=int, metavar="N", help="hosts fetched in parallel")
    p.add_argument("--scope", choices=["same_host", "domains", "any"])
    p.add_argument("--allow-private", action="append", default=[], metavar="HOST",
                   help="permit this host even though it resolves to a private/loopback address (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_crawl)

    w = sub.add_parser("ingest-warc", help="read WARC files / URLs / warc.paths.gz listings into page shards")
    w.add_argument("paths", nargs="+", metavar="PATH_OR_URL")
    w.add_argument("--out", required=True, metavar="DIR")
    w.add_argument("--records-per-shard", type=at_least(int, 1), default=1000, metavar="N")
    w.add_argument("--workers", type=at_least(int, 1), default=1, metavar="N", help="files ingested at once, one process each")
    w.set_defaults(func=_ingest_warc)

    d = sub.add_parser("ingest-docs", help="read cleaned documents (.parquet, .jsonl, .json, .ndjson, each also .gz) into "
                       "document shards")
    d.add_argument("paths", nargs="+", metavar="PATH_OR_URL")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--text-column", default="text")
    d.add_argument("--url-column", default="url")
    d.add_argument("--records-per-shard", type=at_least(int, 1), default=1000, metavar="N")
    d.add_argument("--workers", type=at_least(int, 1), default=1, metavar="N", help="files ingested at once, one process each")
    d.set_defaults(func=_ingest_docs)


def _print(summary: dict) -> int:
    """The summary as JSON; exit 1 when a whole input file failed (missing, cut short, unreadable):
    what was read is kept, and a rerun after the fix reads only the failed files."""
    json.dump(summary, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    from pipeline_lib.pipeline import failed_files_lines

    no_url = summary.get("counters", {}).get("docs.rows_without_url", 0)
    if no_url:  # every URL empty is usually a url column under another name
        print(f"note: {no_url} of {summary.get('docs', 0)} documents have no URL (no value in their url column; "
              "name it with --url-column)", file=sys.stderr)
    lines = failed_files_lines(summary)
    for line in lines:
        print(line, file=sys.stderr)
    return 1 if lines else 0


def _crawl(args: argparse.Namespace) -> int:
    from pipeline_lib import shards
    from pipeline_lib.config import load_config, parse_config
    from pipeline_lib.crawl import run_crawl

    overrides: dict = {"seeds": args.seed}
    for key, value in (("max_pages", args.max_pages), ("max_depth", args.max_depth), ("delay_seconds", args.delay),
                       ("concurrency", args.concurrency), ("scope", args.scope)):
        if value is not None:
            overrides[key] = value
    if args.config:
        cfg = load_config(args.config, {"crawl": overrides})
    else:
        cfg = parse_config({"crawl": overrides}, "<command line>")
    if args.allow_private:
        cfg.crawl.allow_private_hosts = sorted(set(cfg.crawl.allow_private_hosts) | {h.lower() for h in args.allow_private})

    def progress(event: dict) -> None:
        if not args.quiet:
            print(f"crawl: {event['shard']} written; pages {event['pages']}, rejected {event['rejected']}, "
                  f"queued {event['queued']}", file=sys.stderr)

    fs = shards.filesystem(args.out)
    return _print(run_crawl(cfg, fs, args.out, progress))


def _ingest_warc(args: argparse.Namespace) -> int:
    from pipeline_lib import shards
    from pipeline_lib.crawl import ingest_warc

    fs = shards.filesystem(args.out)
    return _print(ingest_warc(args.paths, fs, args.out, records_per_shard=args.records_per_shard,
                              workers=args.workers))


def _ingest_docs(args: argparse.Namespace) -> int:
    from pipeline_lib import shards
    from pipeline_lib.crawl import ingest_docs

    fs = shards.filesystem(args.out)
    return _print(ingest_docs(args.paths, fs, args.out, text_column=args.text_column, url_column=args.url_column,
                              records_per_shard=args.records_per_shard, workers=args.workers))
