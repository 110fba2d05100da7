"""Dedup: pairwise precision/recall/F1 of the MinHash clustering on {id, text, cluster} lines.

A pair of documents is positive when both carry the same gold ``cluster``; the pipeline predicts
a pair positive when it puts both in one cluster (exact or near duplicate). Uses the dedup
section of the pipeline config (``--config``), with flags to try other settings.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline_lib.config import DedupConfig, PipelineConfig, load_config


# dedup knobs the command line may override (--shingle-hash has its own choices below)
NUMERIC_KNOBS = (("ngram", int), ("num_perm", int), ("bands", int), ("rows", int), ("verify_threshold", float),
                 ("neighbours", int))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.jsonl", help="{id, text, cluster} per line")
    parser.add_argument("--config", help="pipeline YAML whose dedup section to use (default: built-in defaults)")
    for knob, kind in NUMERIC_KNOBS:
        parser.add_argument(f"--{knob.replace('_', '-')}", dest=knob, type=kind, default=None,
                            help=f"override dedup.{knob}")
    parser.add_argument("--shingle-hash", dest="shingle_hash", choices=["sha1", "poly64"], default=None,
                        help="override dedup.shingle_hash (sha1 = datasketch's default MinHash, bit for bit)")


def dedup_config(args: argparse.Namespace) -> DedupConfig:
    base = load_config(args.config).dedup if getattr(args, "config", None) else PipelineConfig().dedup
    knobs = [knob for knob, _ in NUMERIC_KNOBS] + ["shingle_hash"]
    overrides = {k: getattr(args, k) for k in knobs if getattr(args, k, None) is not None}
    return DedupConfig.model_validate({**base.model_dump(), **overrides, "scope": "run"})


def predict_clusters(ids: list[str], texts: list[str], dcfg: DedupConfig) -> list[str]:
    """The cluster label (smallest member id) the pipeline gives each document."""
    from pipeline_lib.dedup.steps import cluster_label_rows, cluster_table, signature_table

    table = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())})
    roots = cluster_table(signature_table(table, dcfg), dcfg)
    return [ids[row] for row in cluster_label_rows(table.column("id"), roots)]


def pairwise_scores(gold: list, predicted: list) -> dict[str, float | int]:
    """Pairwise precision/recall/F1 computed from cluster sizes (no O(n^2) pair list)."""
    def pairs(counter: Counter) -> int:
        return sum(c * (c - 1) // 2 for c in counter.values())

    true_pairs = pairs(Counter(gold))
    predicted_pairs = pairs(Counter(predicted))
    both = pairs(Counter(zip(gold, predicted)))
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_pairs": true_pairs,
            "predicted_pairs": predicted_pairs, "correct_pairs": both}


def read_gold(path: str) -> tuple[list[str], list[str], list]:
    ids, texts, clusters = [], [], []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                ids.append(str(row["id"]))
                texts.append(row.get("text") or "")
                clusters.append(row["cluster"])
    return ids, texts, clusters


def evaluate(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    ids, texts, gold = read_gold(args.file)
    dcfg = dedup_config(args)
    predicted = predict_clusters(ids, texts, dcfg)
    metrics = {**pairwise_scores(gold, predicted), "documents": len(ids),
               "config": {k: v for k, v in dcfg.model_dump().items() if k in (
                   "exact", "near", "ngram", "num_perm", "bands", "rows", "verify_threshold", "neighbours",
                   "shingle_hash")}}
    return metrics, [{"id": i, "cluster": c} for i, c in zip(ids, predicted)]

