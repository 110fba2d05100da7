"""PII detection: precision/recall per entity type on presidio-research records.

Records look like ``{"full_text": ..., "spans": [{"entity_type", "start_position", "end_position"}]}``.
A detected span counts when it overlaps a gold span of the same type (precision: detected spans
that do; recall: gold spans that are hit). Only the configured entities are scored; micro averages
pool their counts. ``--engine presidio`` scores presidio used plainly (every predefined recognizer,
blank spaCy pipeline) on the same entities, for comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline_lib.config import PipelineConfig, load_config, parse_config

SpanTuple = tuple[str, int, int]  # (entity_type, start, end)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="presidio-research JSON file (a list of records)")
    parser.add_argument("--config", help="pipeline YAML whose pii section is used (default: built-in defaults)")
    parser.add_argument("--entities", help="comma-separated entity types (overrides the config)")
    parser.add_argument("--engine", choices=["stage", "presidio"], default="stage",
                        help="stage = our detector (default); presidio = plain AnalyzerEngine for comparison")
    parser.add_argument("--no-fast-path", action="store_true", help="run our recognizers through AnalyzerEngine")
    parser.add_argument("--score-threshold", type=float, help="override pii.score_threshold")
    parser.add_argument("--limit", type=int, help="score only the first N records")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    return data


def gold_spans(record: dict[str, Any], entities: set[str]) -> list[SpanTuple]:
    return [(s["entity_type"], int(s["start_position"]), int(s["end_position"]))
            for s in record.get("spans") or [] if s.get("entity_type") in entities]


def _overlaps(a: SpanTuple, b: SpanTuple) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def score(gold: list[list[SpanTuple]], pred: list[list[SpanTuple]], entities: Iterable[str]) -> dict[str, Any]:
    """Per-entity and micro precision/recall under the overlap-and-same-type rule."""
    entities = list(entities)
    counts = {e: {"gold": 0, "gold_found": 0, "pred": 0, "pred_correct": 0} for e in entities}
    for g_doc, p_doc in zip(gold, pred, strict=True):
        for g in g_doc:
            counts[g[0]]["gold"] += 1
            counts[g[0]]["gold_found"] += any(_overlaps(g, p) for p in p_doc)
        for p in p_doc:
            if p[0] in counts:
                counts[p[0]]["pred"] += 1
                counts[p[0]]["pred_correct"] += any(_overlaps(p, g) for g in g_doc)

    def pr(c: dict[str, int]) -> dict[str, Any]:
        precision = c["pred_correct"] / c["pred"] if c["pred"] else 1.0
        recall = c["gold_found"] / c["gold"] if c["gold"] else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, **c}

    micro = {k: sum(c[k] for c in counts.values()) for k in ("gold", "gold_found", "pred", "pred_correct")}
    return {"micro": pr(micro), "per_entity": {e: pr(c) for e, c in counts.items()}}


def _config(args: argparse.Namespace) -> PipelineConfig:
    cfg = load_config(args.config) if args.config else parse_config({})
    pii = cfg.pii.model_dump()
    if args.entities:
        pii["entities"] = [e.strip() for e in args.entities.split(",") if e.strip()]
    if args.score_threshold is not None:
        pii["score_threshold"] = args.score_threshold
    if args.no_fast_path:
        pii["fast_path"] = False
    return parse_config({**cfg.model_dump(mode="json"), "pii": pii})


def _predictor(cfg: PipelineConfig, engine: str) -> Callable[[str], list[SpanTuple]]:
    if engine == "presidio":
        from pipeline_lib.pii.detect import plain_presidio_analyzer

        analyzer, entities = plain_presidio_analyzer(), list(cfg.pii.entities)
        threshold = cfg.pii.score_threshold
        return lambda text: [(r.entity_type, r.start, r.end) for r in
                             analyzer.analyze(text, language="en", entities=entities, score_threshold=threshold)]
    from pipeline_lib.pii import PiiScrubber

    scrubber = PiiScrubber(cfg)
    return lambda text: [(s.entity_type, s.start, s.end) for s in scrubber.spans(text)[0]]


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cfg = _config(args)
    records = load_records(args.path)[: args.limit] if args.limit else load_records(args.path)
    entities = list(dict.fromkeys(cfg.pii.entities))
    predict = _predictor(cfg, args.engine)
    gold, pred, predictions = [], [], []
    for i, record in enumerate(records):
        text = record.get("full_text") or ""
        spans = predict(text) if text else []
        gold.append(gold_spans(record, set(entities)))
        pred.append(spans)
        predictions.append({"id": i, "spans": [{"entity_type": t, "start": s, "end": e} for t, s, e in spans]})
    metrics = {"records": len(records), "engine": args.engine, "fast_path": cfg.pii.fast_path and args.engine == "stage",
               "score_threshold": cfg.pii.score_threshold, "entities": entities, **score(gold, pred, entities)}
    return metrics, predictions
