"""Language identification on labelled sentences: macro/micro accuracy and accuracy per language.

Reads ``LANG.txt`` files (one sentence per line; the file name is the ISO 639-1 code). By default it
runs the pipeline's identifier as configured by default (whitespace normalised + script check);
``--lowercase`` adds lowercasing (better on sentences, see ``pipeline_lib.langid.normalize``);
``--plain`` runs lid.176 as the libraries do (whitespace normalised only) for comparison.
``--restrict`` limits answers to the languages present in the folder: not what the pipeline does on
a crawl, reported separately because it is a different (easier) task.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline_lib.evaluate.metrics import accuracy_scores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="folder of LANG.txt files (e.g. ../shared/data/langid)")
    parser.add_argument("--plain", action="store_true", help="plain lid.176: no script check, no lowercasing")
    parser.add_argument("--lowercase", action="store_true", help="lowercase before predicting")
    parser.add_argument("--no-script-check", action="store_true")
    parser.add_argument("--restrict", action="store_true", help="only the folder's languages may be answered")
    parser.add_argument("--model", default=None, help="lid.176 .ftz/.bin (default: the packaged .ftz)")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences per language")


def load_sentences(folder: str | Path, limit: int | None = None) -> list[tuple[str, str, str]]:
    """[(id, gold language, sentence)], ids like 'de:17' (1-based line number)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"not a folder: {folder}")
    items = []
    for path in sorted(folder.glob("*.txt")):
        lang = path.stem
        lines = [(i, l) for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if l.strip()]
        items += [(f"{lang}:{i}", lang, line) for i, line in lines[:limit]]
    return items


def run(items: list[tuple[str, str, str]], lowercase: bool = False, script_check: bool = True,
        restrict: bool = False, model_path: str | None = None) -> tuple[dict, list[dict]]:
    from pipeline_lib.langid import LanguageIdentifier

    candidates = sorted({gold for _, gold, _ in items}) if restrict else None
    ident = LanguageIdentifier(model_path, lowercase=lowercase, script_check=script_check, candidates=candidates)
    t0 = time.perf_counter()
    preds = ident.predict([text for _, _, text in items])
    seconds = time.perf_counter() - t0
    metrics = accuracy_scores([(gold, pred[0]) for (_, gold, _), pred in zip(items, preds)])
    metrics = {"macro_accuracy": metrics["macro_accuracy"], "micro_accuracy": metrics["micro_accuracy"],
               "sentences": len(items), "languages": len(metrics["per_language"]),
               "sentences_per_second": len(items) / seconds if seconds else 0.0,
               "lowercase": lowercase, "script_check": script_check, "restricted": restrict,
               "per_language": metrics["per_language"]}
    predictions = [{"id": i, "gold": gold, "pred": p[0], "score": round(p[1], 5)}
                   for (i, gold, _), p in zip(items, preds)]
    return metrics, predictions


def evaluate(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    items = load_sentences(args.path, args.limit)
    return run(items, lowercase=args.lowercase and not args.plain,
               script_check=not (args.plain or args.no_script_check), restrict=args.restrict,
               model_path=args.model)
