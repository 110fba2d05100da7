"""Gopher repetition and quality rules (Rae et al. 2021, as FineWeb applies them).

Character fractions are over ``len(text)``, as in datatrove. Two deliberate differences from
datatrove: the top n-gram rule fires only for an n-gram that actually repeats (count >= 2; a short
unique text is ``gopher_short_doc``, not a "repetition"), and line fractions of the quality rules
count non-blank lines only.
"""

from __future__ import annotations

import re
from collections import Counter
from operator import itemgetter
from typing import Any

import pyarrow as pa

from pipeline_lib.filters import Doc, QualityFilter, duplicates, over, under

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")
_BULLETS = ("•", "-", "*", "–", "—", "·", "●", "○", "■", "□", "▪", "◦", "‣", "➢", "►", "→")
_ELLIPSES = ("...", "…")


def ngrams(words: list[str], n: int):
    """Consecutive n-word tuples, built by zip in C."""
    return zip(*(words[i:] for i in range(n)))


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram (its length with spaces, times its count)."""
    counts = Counter(ngrams(words, n))
    if not counts:
        return 0
    gram, count = max(counts.items(), key=itemgetter(1))
    if count < 2:
        return 0
    return (sum(map(len, gram)) + n - 1) * count


def dup_ngram_chars(words: list[str], n: int) -> int:
    """Characters (without spaces) in n-grams that repeat an earlier, non-overlapping one.

    The Gopher walk: at each position, a gram seen before counts and the walk jumps past it; else
    it is remembered and the walk moves one word. Only grams that occur twice or more can ever be
    "seen before", so the walk visits just those positions (usually none) instead of every word.
    """
    grams = list(ngrams(words, n))
    counts = Counter(grams)
    if len(counts) == len(grams):
        return 0
    seen: set[tuple[str, ...]] = set()
    repeated = 0
    next_free = 0
    for pos, gram in enumerate(grams):
        if pos < next_free or counts[gram] < 2:
            continue
        if gram in seen:
            repeated += sum(map(len, gram))
            next_free = pos + n
        else:
            seen.add(gram)
    return repeated


class GopherRepetition(QualityFilter):
    name = "gopher_repetition"
    columns = {
        "q_dup_para_frac": pa.float64(), "q_dup_para_char_frac": pa.float64(),
        "q_dup_line_frac": pa.float64(), "q_dup_line_char_frac": pa.float64(),
    }

    def __init__(self, params: Any):
        super().__init__(params)
        self.top = sorted(params.top_ngram_char_frac.items())
        self.dup = sorted(params.dup_ngram_char_frac.items())
        # Instance-level so the configured n's get their own columns.
        self.columns = dict(type(self).columns)
        self.columns.update({f"q_top_{n}gram_frac": pa.float64() for n, _ in self.top})
        self.columns.update({f"q_dup_{n}gram_frac": pa.float64() for n, _ in self.dup})

    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        p, text = self.params, doc.text
        n_chars = len(text) or 1
        paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
        lines = [line for line in _LINE_SPLIT.split(text) if line]
        n_para, para_chars = duplicates(paragraphs)
        n_line, line_chars = duplicates(lines)
        signals["q_dup_para_frac"] = n_para / max(len(paragraphs), 1)
        signals["q_dup_para_char_frac"] = para_chars / n_chars
        signals["q_dup_line_frac"] = n_line / max(len(lines), 1)
        signals["q_dup_line_char_frac"] = line_chars / n_chars
        words = doc.words
        for n, _ in self.top:
            signals[f"q_top_{n}gram_frac"] = top_ngram_chars(words, n) / n_chars
        # A repeated (n+1)-gram contains a repeated n-gram: once none repeats, larger n's are zero.
        none_left = False
        for n, _ in self.dup:
            chars = 0 if none_left else dup_ngram_chars(words, n)
            none_left = chars == 0
            signals[f"q_dup_{n}gram_frac"] = chars / n_chars

        for key in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
            if over(signals[f"q_{key}"], getattr(p, key)):
                return f"gopher_rep_{key}"
        for n, limit in self.top:
            if over(signals[f"q_top_{n}gram_frac"], limit):
                return f"gopher_rep_top_{n}gram"
        for n, limit in self.dup:
            if over(signals[f"q_dup_{n}gram_frac"], limit):
                return f"gopher_rep_dup_{n}gram"
        return None


class GopherQuality(QualityFilter):
    name = "gopher_quality"
    columns = {
        "q_word_count": pa.int64(), "q_mean_word_len": pa.float64(), "q_hash_word_ratio": pa.float64(),
        "q_ellipsis_word_ratio": pa.float64(), "q_bullet_lines_frac": pa.float64(),
        "q_ellipsis_lines_frac": pa.float64(), "q_alpha_words_frac": pa.float64(), "q_stop_words": pa.int64(),
    }

    def __init__(self, params: Any):
        super().__init__(params)
        # Lowercase, Capitalised and UPPER forms, so counting is one C-level set lookup per word.
        stop = {w.lower() for w in params.stop_words}
        self.stop_words = frozenset(stop | {w.capitalize() for w in stop} | {w.upper() for w in stop})

    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        p, text, words = self.params, doc.text, doc.words
        n_words = len(words)
        per_word = max(n_words, 1)
        lines = [line for line in doc.lines if line.strip()]
        n_lines = max(len(lines), 1)
        signals["q_word_count"] = n_words
        signals["q_mean_word_len"] = sum(map(len, words)) / per_word
        signals["q_hash_word_ratio"] = text.count("#") / per_word
        signals["q_ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / per_word
        signals["q_bullet_lines_frac"] = sum(1 for line in lines if line.lstrip().startswith(_BULLETS)) / n_lines
        signals["q_ellipsis_lines_frac"] = sum(1 for line in lines if line.rstrip().endswith(_ELLIPSES)) / n_lines
        # \w words lacking any letter are digit/underscore runs; isdigit covers them all but "_".
        signals["q_alpha_words_frac"] = (n_words - sum(map(str.isdigit, words))) / per_word
        signals["q_stop_words"] = sum(map(self.stop_words.__contains__, words))

        if under(n_words, p.min_words):
            return "gopher_short_doc"
        if over(n_words, p.max_words):
            return "gopher_long_doc"
        if under(signals["q_mean_word_len"], p.min_mean_word_len):
            return "gopher_mean_word_len_low"
        if over(signals["q_mean_word_len"], p.max_mean_word_len):
            return "gopher_mean_word_len_high"
        if over(signals["q_hash_word_ratio"], p.max_symbol_word_ratio):
            return "gopher_hash_ratio"
        if over(signals["q_ellipsis_word_ratio"], p.max_symbol_word_ratio):
            return "gopher_ellipsis_ratio"
        if over(signals["q_bullet_lines_frac"], p.max_bullet_lines_frac):
            return "gopher_bullet_lines"
        if over(signals["q_ellipsis_lines_frac"], p.max_ellipsis_lines_frac):
            return "gopher_ellipsis_lines"
        if under(signals["q_alpha_words_frac"], p.min_alpha_words_frac):
            return "gopher_alpha_words"
        if under(signals["q_stop_words"], p.min_stop_words):
            return "gopher_stop_words"
        return None
