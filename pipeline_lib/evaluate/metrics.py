"""Metrics shared by the curation evaluations.

Extraction follows the scrapinghub article-extraction-benchmark: texts become ``\\w+`` tokens,
tokens become 4-token shingles counted as a multiset; per page, true positives, false positives and
false negatives are normalised to sum to 1 (so long pages weigh no more than short ones);
precision is averaged over pages that predicted anything or had a match, recall over pages with
gold text, and F1 is the harmonic mean of the two averages.
"""

from __future__ import annotations

import re
from collections import Counter
from statistics import mean

_TOKEN = re.compile(r"\w+", re.UNICODE)


def shingles(text: str | None, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    # A text shorter than n tokens is one (short) shingle, as in the benchmark.
    return Counter(tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1)) if tokens[i:i + n])


def shingle_match(gold: str | None, pred: str | None, n: int = 4) -> tuple[float, float, float]:
    """(tp, fp, fn) over shingle multisets, normalised to sum to 1 (all 0 when both are empty)."""
    g, p = shingles(gold, n), shingles(pred, n)
    tp = sum((g & p).values())
    fp = sum((p - g).values())
    fn = sum((g - p).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _page_precision(tp: float, fp: float, fn: float) -> float:
    if fp == 0 and fn == 0:
        return 1.0
    return tp / (tp + fp) if tp + fp else 0.0


def _page_recall(tp: float, fp: float, fn: float) -> float:
    if fp == 0 and fn == 0:
        return 1.0
    return tp / (tp + fn) if tp + fn else 0.0


def extraction_scores(matches: list[tuple[float, float, float]]) -> dict[str, float]:
    """Benchmark precision / recall / F1 from per-page (tp, fp, fn)."""
    precisions = [_page_precision(*m) for m in matches if m[0] + m[1] > 0]
    recalls = [_page_recall(*m) for m in matches if m[0] + m[2] > 0]
    p = mean(precisions) if precisions else 0.0
    r = mean(recalls) if recalls else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"f1": f1, "precision": p, "recall": r}


def accuracy_scores(pairs: list[tuple[str, str | None]]) -> dict:
    """Macro / micro accuracy and per-label accuracy from (gold, predicted) pairs."""
    per_gold: dict[str, list[int]] = {}
    for gold, pred in pairs:
        hits = per_gold.setdefault(gold, [0, 0])
        hits[0] += gold == pred
        hits[1] += 1
    per_label = {g: h[0] / h[1] for g, h in sorted(per_gold.items())}
    micro = sum(h[0] for h in per_gold.values()) / max(1, sum(h[1] for h in per_gold.values()))
    macro = mean(per_label.values()) if per_label else 0.0
    return {"macro_accuracy": macro, "micro_accuracy": micro, "per_language": per_label}
