"""Speed of the PII stage against presidio used plainly, on the same texts and the same single core.

Competitor: a default ``AnalyzerEngine().analyze(text, language="en")`` (every predefined recognizer,
blank spaCy pipeline, since no model may be downloaded) followed by ``AnonymizerEngine().anonymize``.
We also time presidio restricted to our six entities, a fairer but still plain use.
Ours: ``PiiStage.process`` on an Arrow table of the same texts (fast path on, default config).

Texts: real article bodies from ``../shared/data/extraction/*.json`` (mostly without PII) plus the
presidio-research synthetic records (PII-dense), in the proportions printed under ``mix``. Recall on
the gold set is measured in the same run with the same stage, so speed is not bought with misses.

Prints one JSON object.  Usage: ``python bench/pii.py [--repeat N] [--synth-limit N]``
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, bench/ itself is on sys.path, where bench/tokenize.py would shadow the stdlib module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def load_parts(synth_limit: int | None) -> dict[str, list[str]]:
    articles = []
    for path in sorted(glob.glob(str(DATA / "extraction" / "*.json"))):
        body = json.loads(Path(path).read_text(encoding="utf-8")).get("articleBody") or ""
        if body.strip():
            articles.append(body)
    synth = [r["full_text"] for r in json.loads((DATA / "pii" / "synth_pii.json").read_text(encoding="utf-8"))]
    return {"web_articles": articles, "synthetic_pii": synth[:synth_limit] if synth_limit else synth}


def cpu_seconds(fn, repeat: int) -> float:
    """Best CPU time of ``repeat`` runs: fair on a shared machine, as both sides use one thread."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes of our stage (the best counts)")
    ap.add_argument("--synth-limit", type=int, default=None, help="use only the first N synthetic records")
    args = ap.parse_args()

    import pyarrow as pa
    from presidio_anonymizer import AnonymizerEngine

    from pipeline_lib.config import parse_config
    from pipeline_lib.evaluate.pii import gold_spans, load_records, score
    from pipeline_lib.pii import PiiScrubber, PiiStage
    from pipeline_lib.pii.detect import plain_presidio_analyzer

    parts = load_parts(args.synth_limit)
    cfg = parse_config({})
    entities = list(cfg.pii.entities)
    stage = PiiStage(cfg)
    no_fast_path = PiiStage(parse_config({"pii": {"fast_path": False}}))
    analyzer, anonymizer = plain_presidio_analyzer(), AnonymizerEngine()

    def plain(texts: list[str], restricted: bool) -> None:
        for text in texts:
            results = analyzer.analyze(text, language="en", entities=entities if restricted else None)
            anonymizer.anonymize(text, results)

    every = [t for texts in parts.values() for t in texts]
    table_of = {name: pa.table({"text": pa.array(texts, pa.string())}) for name, texts in parts.items()}
    # Warm-up outside the timing: the first calls compile every recognizer's regexes.
    stage.process(pa.table({"text": every}))
    no_fast_path.process(pa.table({"text": every[::20]}))
    plain(every[::20], False)

    seconds: dict[str, dict[str, float]] = {}
    for name, texts in parts.items():
        seconds[name] = {
            "ours": cpu_seconds(lambda: stage.process(table_of[name]), args.repeat),
            "ours_without_fast_path": cpu_seconds(lambda: no_fast_path.process(table_of[name]), 1),
            "presidio_plain": cpu_seconds(lambda: plain(texts, False), 1),
            "presidio_restricted": cpu_seconds(lambda: plain(texts, True), 1),
        }
    chars = {name: sum(map(len, texts)) for name, texts in parts.items()}
    total_chars = sum(chars.values())

    def cps(n_chars: int, secs: float) -> int:
        return round(n_chars / secs) if secs > 0 else 0

    systems = ["ours", "ours_without_fast_path", "presidio_plain", "presidio_restricted"]
    total = {k: sum(seconds[p][k] for p in parts) for k in systems}
    by_part = {p: {"docs": len(parts[p]), "chars": chars[p],
                   **{f"{k}_chars_per_s": cps(chars[p], seconds[p][k]) for k in systems},
                   "ratio_vs_plain": round(seconds[p]["presidio_plain"] / seconds[p]["ours"], 1)}
               for p in parts}

    records = load_records(DATA / "pii" / "synth_pii.json")
    scrubber = PiiScrubber(cfg)
    gold = [gold_spans(r, set(entities)) for r in records]
    pred = [[(s.entity_type, s.start, s.end) for s in scrubber.spans(r["full_text"])[0]] for r in records]
    quality = score(gold, pred, entities)["micro"]

    print(json.dumps({
        "bench": "pii", "cores": 1, "timer": "process CPU seconds", "cpu_count": os.cpu_count(),
        "mix": {"web_articles_docs": len(parts["web_articles"]), "synthetic_pii_docs": len(parts["synthetic_pii"]),
                "web_articles_chars": chars["web_articles"], "synthetic_pii_chars": chars["synthetic_pii"],
                "share_of_chars_from_web_articles": round(chars["web_articles"] / total_chars, 3)},
        "systems": {
            "ours": "PiiStage.process: fast path, 6 entities, placeholders",
            "ours_without_fast_path": "same recognizers through presidio's AnalyzerEngine on whole texts",
            "presidio_plain": "AnalyzerEngine().analyze(text, 'en') + AnonymizerEngine().anonymize, blank spaCy",
            "presidio_restricted": "the same with analyze(entities=our 6)",
        },
        "chars_per_s": {k: cps(total_chars, total[k]) for k in systems},
        "seconds": {k: round(v, 3) for k, v in total.items()},
        "by_part": by_part,
        "ratio_vs_plain": round(total["presidio_plain"] / total["ours"], 1),
        "ratio_vs_restricted": round(total["presidio_restricted"] / total["ours"], 1),
        "gold_micro_with_fast_path": {"precision": round(quality["precision"], 4),
                                      "recall": round(quality["recall"], 4)},
    }))


if __name__ == "__main__":
    main()
