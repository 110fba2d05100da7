"""Gopher repetition and quality rules (Rae et al. 2021, as FineWeb applies them).

Measures follow datatrove's definitions (character fractions over ``len(text)``, n-grams over
tokens with punctuation, word statistics over non-punctuation words). Deliberate differences: the
top n-gram rule fires only for an n-gram that actually repeats (count >= 2; a short unique text is
``gopher_short_doc``, not a "repetition"), stop words count in any case ("The" counts), and more
bullet glyphs than "•" and "-" start a bullet line.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline_lib.filters import Doc, QualityFilter, duplicates, over, under

_BULLETS = ("•", "-", "*", "–", "—", "·", "●", "○", "■", "□", "▪", "◦", "‣", "➢", "►", "→")
_ELLIPSES = ("...", "…")


# n-grams are identified by a 64-bit polynomial hash of their words' string hashes, computed for
# many positions at once with numpy and counted with np.unique (a sort in C). A collision would
# need two different n-grams of one document to agree on 64 bits: negligible.
_HASH_MULT = np.int64(0x100000001B3)  # FNV prime: odd, so multiplying by it loses no bits


def repetition_profile(words: list[str], top_ns: list[int], dup_ns: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Gopher's n-gram repetition measures for several n in one pass over growing n.

    Returns ({n: characters covered by the most frequent n-gram, its length with spaces times its
    count}, {n: characters, without spaces, of n-grams repeating an earlier non-overlapping one}).
    Both are 0 when no n-gram repeats. Ties for the top n-gram go to the one seen first, as with
    ``Counter.most_common``.

    Why it is fast: an n-gram that occurs twice starts with an (n-1)-gram that occurs twice, so
    level n only looks at the positions whose (n-1)-gram repeated, a set that shrinks quickly in
    real text; once it is empty every larger n is 0.
    """
    top = dict.fromkeys(top_ns, 0)
    dup = dict.fromkeys(dup_ns, 0)
    wanted = [*top_ns, *dup_ns]
    n_words = len(words)
    if not wanted or n_words < 2:
        return top, dup
    low, high = min(wanted), max(wanted)
    if n_words < low:
        return top, dup
    hashes = np.fromiter(map(hash, words), np.int64, n_words)
    char_ends = np.concatenate(([0], np.cumsum(np.fromiter(map(len, words), np.int64, n_words))))
    positions = np.arange(n_words - low + 1)
    keys = hashes[: n_words - low + 1].copy()
    with np.errstate(over="ignore"):
        for j in range(1, low):
            keys = keys * _HASH_MULT + hashes[j: j + positions.size]
        for n in range(low, high + 1):
            if n > low:
                fits = positions + n <= n_words
                positions = positions[fits]
                keys = keys[fits] * _HASH_MULT + hashes[positions + n - 1]
            if positions.size < 2:
                break
            _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
            best = int(counts.max())
            if best < 2:
                break
            if n in top:
                start = int(positions[first[counts == best].min()])
                top[n] = (int(char_ends[start + n] - char_ends[start]) + n - 1) * best
            repeats = counts[inverse] >= 2
            positions, keys = positions[repeats], keys[repeats]
            if n in dup:
                dup[n] = _gopher_walk(positions.tolist(), keys.tolist(), n, char_ends)
    return top, dup


def _gopher_walk(positions: list[int], keys: list[int], n: int, char_ends: np.ndarray) -> int:
    """The Gopher walk over the positions of repeating n-grams: a gram seen before counts and the
    walk jumps past it; else it is remembered. Positions of grams occurring once are left out:
    remembering them could never match later, so the result is the same as walking every word."""
    seen: set[int] = set()
    repeated = 0
    next_free = 0
    for pos, key in zip(positions, keys):
        if pos < next_free:
            continue
        if key in seen:
            repeated += int(char_ends[pos + n] - char_ends[pos])
            next_free = pos + n
        else:
            seen.add(key)
    return repeated


def top_ngram_chars(words: list[str], n: int) -> int:
    return repetition_profile(words, [n], [])[0][n]


def dup_ngram_chars(words: list[str], n: int) -> int:
    return repetition_profile(words, [], [n])[1][n]


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
        # str.split, not re.split(r"\n{2,}") / r"\n+": same pieces, ten times faster.
        paragraphs = [para.strip("\n") for para in text.strip().split("\n\n")]
        paragraphs = [para for para in paragraphs if para]
        lines = [line for line in doc.lines if line]
        n_para, para_chars = duplicates(paragraphs)
        n_line, line_chars = duplicates(lines)
        signals["q_dup_para_frac"] = n_para / max(len(paragraphs), 1)
        signals["q_dup_para_char_frac"] = para_chars / n_chars
        signals["q_dup_line_frac"] = n_line / max(len(lines), 1)
        signals["q_dup_line_char_frac"] = line_chars / n_chars
        top, dup = repetition_profile(doc.tokens, [n for n, _ in self.top], [n for n, _ in self.dup])
        for n, _ in self.top:
            signals[f"q_top_{n}gram_frac"] = top[n] / n_chars
        for n, _ in self.dup:
            signals[f"q_dup_{n}gram_frac"] = dup[n] / n_chars

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
        # Lowercase, Capitalised and UPPER forms, so finding them is one C-level set intersection.
        stop = {w.lower() for w in params.stop_words}
        self.stop_words = frozenset(stop | {w.capitalize() for w in stop} | {w.upper() for w in stop})

    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        p, text, words = self.params, doc.text, doc.words
        n_words = len(words)
        # As in datatrove: word counts and lengths over non-punctuation words; ratios "per word"
        # over all tokens, punctuation included; line fractions over all lines, blank ones included.
        per_token = max(doc.n_tokens, 1)
        lines = doc.lines
        n_lines = max(len(lines), 1)
        signals["q_word_count"] = n_words
        signals["q_mean_word_len"] = sum(map(len, words)) / max(n_words, 1)
        signals["q_hash_word_ratio"] = text.count("#") / per_token
        signals["q_ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / per_token
        signals["q_bullet_lines_frac"] = sum(1 for line in lines if line.lstrip().startswith(_BULLETS)) / n_lines
        signals["q_ellipsis_lines_frac"] = sum(1 for line in lines if line.rstrip().endswith(_ELLIPSES)) / n_lines
        # A word has a letter when any character isalpha(), as in datatrove: digits, ½ ① Ⅻ, a
        # bullet or an emoji do not (the symbol tokens have none either, so they need no look).
        no_letter = sum(1 for w in words if not w[0].isalpha() and not any(map(str.isalpha, w)))
        signals["q_alpha_words_frac"] = (n_words - no_letter) / per_token
        # Distinct stop words, any case (datatrove: distinct, exact case).
        found = self.stop_words.intersection(words)
        signals["q_stop_words"] = len({w.lower() for w in found})

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
