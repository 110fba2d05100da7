"""FineWeb's own three filters (Penedo et al. 2024), plus its newline-per-word ("list") rule.

Over the non-blank lines: the fraction ending in terminal punctuation must reach 0.12, the
fraction of lines of at most 30 characters must not pass 0.67, and the characters in lines that
repeat an earlier line must be at most 1% of all non-newline characters. Newlines per word above
0.3 mark a list rather than prose.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline_lib.filters import TERMINAL_PUNCT, Doc, QualityFilter, duplicates, over, under


class FineWeb(QualityFilter):
    name = "fineweb"
    columns = {"q_line_punct_ratio": pa.float64(), "q_short_line_ratio": pa.float64(),
               "q_dup_line_char_ratio": pa.float64(), "q_newline_word_ratio": pa.float64()}

    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        p, text = self.params, doc.text
        lines = [line for line in doc.lines if line.strip()]
        if not lines:
            return "fineweb_empty"
        n = len(lines)
        short = p.short_line_chars
        punct = sum(1 for line in lines if line.rstrip().endswith(TERMINAL_PUNCT)) / n
        signals["q_line_punct_ratio"] = punct
        signals["q_short_line_ratio"] = sum(1 for line in lines if len(line) <= short) / n
        signals["q_dup_line_char_ratio"] = duplicates(lines)[1] / max(len(text) - text.count("\n"), 1)
        signals["q_newline_word_ratio"] = text.count("\n") / max(doc.n_tokens, 1)  # tokens, as datatrove

        if under(punct, p.min_line_punct_ratio) and not (punct == 0 and p.line_punct_exclude_zero):
            return "fineweb_line_punct_ratio"
        if over(signals["q_short_line_ratio"], p.max_short_line_ratio):
            return "fineweb_short_line_ratio"
        if over(signals["q_dup_line_char_ratio"], p.max_dup_line_char_ratio):
            return "fineweb_dup_line_char_ratio"
        if over(signals["q_newline_word_ratio"], p.max_newline_word_ratio):
            return "fineweb_list_ratio"
        return None
