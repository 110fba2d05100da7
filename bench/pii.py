"""Speed of the PII stage against presidio used plainly, on the same texts and the same single core.

Competitor: a default ``AnalyzerEngine().analyze(text, language="en")`` (every predefined recognizer,
blank spaCy pipeline, since no model may be downloaded) followed by ``AnonymizerEngine().anonymize``.
We also time presidio restricted to our six entities, a fairer but still plain use.
Ours: ``PiiStage.process`` on an Arrow table of the same texts (fast path on, default config).

Texts: real article bodies from ``../shared/data/extraction/*.json`` (mostly without PII) plus the
presidio-research synthetic records (PII-dense), in the proportions printed under ``mix``. Recall on
the gold set is measured in the same run with the same stage, so speed is not bought with misses.

Prints one JSON object.  Usage: ``python bench/pii.py [--repeat N] [--baseline-docs N]``
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


def load_texts(synth_limit: int | None) -> tuple[list[str], dict]:
    articles = []
    for path in sorted(glob.glob(str(DATA / "extraction" / "*.json"))):
        body = json.loads(Path(path).read_text(encoding="utf-8")).get("articleBody") or ""
        if body.strip():
            articles.append(body)
    synth = [r["full_text"] for r in json.loads((DATA / "pii" / "synth_pii.json").read_text(encoding="utf-8"))]
    synth = synth[:synth_limit] if synth_limit else synth
    texts = articles + synth
    mix = {"article_docs": len(articles), "article_chars": sum(map(len, articles)),
           "synthetic_pii_docs": len(synth), "synthetic_pii_chars": sum(map(len, synth)),
           "docs": len(texts), "chars": sum(map(len, texts))}
    return texts, mix


def time_it(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()  # CPU seconds: fair on a shared machine, both sides single-threaded
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes of our stage (best counts)")
    ap.add_argument("--baseline-docs", type=int, default=0,
                    help="time presidio on every k-th doc only (0 = all docs); keeps the run short")
    ap.add_argument("--synth-limit", type=int, default=None, help="use only the first N synthetic records")
    args = ap.parse_args()

    import pyarrow as pa
    from presidio_anonymizer import AnonymizerEngine

    from pipeline_lib.config import parse_config
    from pipeline_lib.evaluate.pii import gold_spans, load_records, score
    from pipeline_lib.pii import PiiScrubber, PiiStage
    from pipeline_lib.pii.detect import plain_presidio_analyzer

    texts, mix = load_texts(args.synth_limit)
    cfg = parse_config({})
    entities = list(cfg.pii.entities)
    stage = PiiStage(cfg)
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string())})
    stage.process(table.slice(0, 5))  # warm caches (regex compilation) outside the timing
    ours_s = time_it(lambda: stage.process(table), args.repeat)

    analyzer, anonymizer = plain_presidio_analyzer(), AnonymizerEngine()
    step = max(1, args.baseline_docs)
    sample = texts[::step]

    def plain(restricted: bool) -> None:
        for text in sample:
            results = analyzer.analyze(text, language="en", entities=entities if restricted else None)
            anonymizer.anonymize(text, results)

    plain("restricted")  # warm-up: first call compiles every recognizer's regexes
    plain_s = time_it(lambda: plain(False), 1)
    restricted_s = time_it(lambda: plain(True), 1)
    sample_chars = sum(map(len, sample))

    records = load_records(DATA / "pii" / "synth_pii.json")
    scrubber = PiiScrubber(cfg)
    gold = [gold_spans(r, set(entities)) for r in records]
    pred = [[(s.entity_type, s.start, s.end) for s in scrubber.spans(r["full_text"])[0]] for r in records]
    quality = score(gold, pred, entities)["micro"]

    ours_cps = mix["chars"] / ours_s
    plain_cps = sample_chars / plain_s
    restricted_cps = sample_chars / restricted_s
    print(json.dumps({
        "bench": "pii", "cores": 1, "cpu_count": os.cpu_count(), "mix": mix,
        "ours": {"what": "PiiStage.process (fast path, 6 entities, placeholders)", "seconds": round(ours_s, 3),
                 "chars_per_s": round(ours_cps), "docs_per_s": round(mix["docs"] / ours_s, 1)},
        "presidio_plain": {"what": "AnalyzerEngine().analyze + AnonymizerEngine().anonymize, blank spaCy",
                           "docs_timed": len(sample), "chars_timed": sample_chars, "seconds": round(plain_s, 3),
                           "chars_per_s": round(plain_cps)},
        "presidio_restricted": {"what": "same, analyze(entities=our 6)", "seconds": round(restricted_s, 3),
                                "chars_per_s": round(restricted_cps)},
        "ratio_vs_plain": round(ours_cps / plain_cps, 1),
        "ratio_vs_restricted": round(ours_cps / restricted_cps, 1),
        "gold_micro": {"precision": round(quality["precision"], 4), "recall": round(quality["recall"], 4)},
    }))


if __name__ == "__main__":
    main()
