"""``crawl2model eval KIND PATH``: quality metrics of a stage on gold data.

Each kind lives in ``pipeline_lib/evaluate/<kind>.py`` and exposes
``add_arguments(parser)`` and ``evaluate(args) -> (metrics: dict, predictions: list[dict])``.
This module owns the shared output: a readable report, ``--json`` (one object on stdout) and
``--save-predictions FILE.jsonl`` (one line per item), so every kind behaves the same.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

KINDS = {
    "extraction": "pipeline_lib.evaluate.extraction",
    "langid": "pipeline_lib.evaluate.langid",
    "dedup": "pipeline_lib.evaluate.dedup",
    "pii": "pipeline_lib.evaluate.pii",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure a stage on gold data (extraction, langid, dedup, pii)")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, module_name in KINDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        kp = kinds.add_parser(kind, help=(module.__doc__ or kind).strip().splitlines()[0])
        module.add_arguments(kp)
        kp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        kp.add_argument("--save-predictions", metavar="FILE.jsonl", help="write one JSON line per item")
        kp.set_defaults(func=_run, eval_module=module)


def _run(args: argparse.Namespace) -> int:
    metrics, predictions = args.eval_module.evaluate(args)
    if args.save_predictions:
        with open(args.save_predictions, "w", encoding="utf-8") as f:
            for row in predictions:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if args.json:
        json.dump(metrics, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _print_report(args.kind, metrics)
    return 0


def _print_report(kind: str, metrics: dict, indent: str = "") -> None:
    if not indent:
        print(f"eval {kind}")
    for k, v in metrics.items():
        if isinstance(v, dict):
            print(f"{indent}  {k}:")
            _print_report(kind, v, indent + "  ")
        elif isinstance(v, float):
            print(f"{indent}  {k}: {v:.4f}")
        else:
            print(f"{indent}  {k}: {v}")
