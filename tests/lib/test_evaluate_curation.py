"""The extraction and langid evaluations: metric arithmetic on hand-made cases, and the real gold sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.evaluate.metrics import accuracy_scores, extraction_scores, shingle_match, shingles

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def test_shingles_are_a_multiset_of_4_token_windows():
    assert shingles("a b c d e") == {("a", "b", "c", "d"): 1, ("b", "c", "d", "e"): 1}
    assert shingles("x y") == {("x", "y"): 1}  # shorter than 4 tokens: one short shingle
    assert shingles("") == {}
    assert shingles("a b c d a b c d")[("a", "b", "c", "d")] == 2


def test_shingle_match_normalises_per_page():
    assert shingle_match("a b c d e f", "a b c d e f") == (1.0, 0.0, 0.0)
    tp, fp, fn = shingle_match("a b c d e f", "a b c d x y")  # gold: abcd bcde cdef; pred: abcd bcdx cdxy
    assert (tp, fp, fn) == pytest.approx((1 / 5, 2 / 5, 2 / 5))
    assert shingle_match("", "") == (0.0, 0.0, 0.0)


def test_extraction_scores_average_over_pages():
    perfect = shingle_match("one two three four five", "one two three four five")
    empty_pred = shingle_match("one two three four five", "")
    scores = extraction_scores([perfect, empty_pred])
    assert scores["precision"] == 1.0  # the empty prediction has no tp+fp and is not averaged
    assert scores["recall"] == 0.5
    assert scores["f1"] == pytest.approx(2 * 0.5 / 1.5)


def test_accuracy_scores_macro_vs_micro():
    pairs = [("en", "en")] * 9 + [("en", "de")] + [("de", "de")]
    r = accuracy_scores(pairs)
    assert r["per_language"] == {"de": 1.0, "en": 0.9}
    assert r["macro_accuracy"] == pytest.approx(0.95)
    assert r["micro_accuracy"] == pytest.approx(10 / 11)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawl2model.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_eval_extraction_on_real_pages(tmp_path):
    if not (SHARED / "extraction").is_dir():
        pytest.skip("../shared/data/extraction not present")
    from pipeline_lib.evaluate.extraction import load_pages, run

    pages = load_pages(SHARED / "extraction", limit=12)
    ours, preds = run(pages, "stage")
    plain, _ = run(pages, "trafilatura")
    assert len(preds) == 12 and {"id", "text"} <= set(preds[0])
    assert ours["f1"] > 0.9 and plain["f1"] > 0.9
    assert ours["f1"] >= plain["f1"] - 0.02


def test_eval_langid_cli_json_and_predictions(tmp_path):
    if not (SHARED / "langid").is_dir():
        pytest.skip("../shared/data/langid not present")
    out = tmp_path / "preds.jsonl"
    proc = _cli("eval", "langid", str(SHARED / "langid"), "--limit", "40", "--json", "--save-predictions", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["languages"] == 24 and metrics["sentences"] == 24 * 40
    assert metrics["macro_accuracy"] > 0.95 and set(metrics["per_language"]) >= {"en", "ja", "zh"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 960 and set(rows[0]) == {"id", "gold", "pred", "score"}
    # the saved predictions reproduce the reported metric
    recomputed = accuracy_scores([(r["gold"], r["pred"]) for r in rows])
    assert recomputed["macro_accuracy"] == pytest.approx(metrics["macro_accuracy"])
