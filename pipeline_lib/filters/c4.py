"""C4's rules (Raffel et al. 2020) as FineWeb applies them: line-level cleanup plus document rules.

Lines are stripped, citation markers removed, and a line is dropped when it has too few words, a
word over ``max_word_len`` characters, mentions javascript or a cookie/privacy policy, or (only
with ``terminal_punct``, which FineWeb switches off) does not end in terminal punctuation. The
whole document is rejected for "lorem ipsum" or a curly bracket, or when fewer than
``min_sentences`` sentences remain. The kept lines, joined by newlines, replace the text.

Sentences are counted without a sentence splitter model: each terminal-punctuation mark followed by
whitespace or the end of the line ends one, except the dot of an abbreviation spaCy keeps whole
(``Mr.``, ``St.``, ``Jan.``) or of an initial (``J.``, ``U.S.``), and a kept line that ends without
one is one more.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline_lib.filters import ABBREVIATIONS, TOKEN_RE, Doc, QualityFilter

_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_LINE_END = (".", "?", "!", '"', "'", "”", "’")
_SENTENCE_END = re.compile(r"[.!?。！？]+[\"'”’)\]]*(?=\s|$)")
# A lone dot right after an abbreviation spaCy keeps whole (Mr., St., Jan.) or an initial (J., U.S.)
# ends no sentence, as in spaCy's sentencizer, which datatrove's C4 filter counts with.
_NOT_AN_END = re.compile(rf"(?<![\w.])(?:{'|'.join(ABBREVIATIONS)}|(?:[A-Za-z]\.)*[A-Za-z])\.(?=\s|$)")
_ENDS_NOT_AN_END = re.compile(_NOT_AN_END.pattern.removesuffix(r"(?=\s|$)") + "$")  # ... at the line's end
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


class C4(QualityFilter):
    name = "c4"
    columns = {"q_c4_lines_removed": pa.int64(), "q_c4_sentences": pa.int64()}

    def line_verdict(self, line: str) -> str | None:
        """Why a (stripped, citation-free) line goes: a line rule, "doc:<reason>" to reject the
        whole document, or None to keep it."""
        p = self.params
        if p.terminal_punct and (not line.endswith(_LINE_END) or line.endswith("...")):
            return "no_terminal_punct"
        words = line.split()
        if p.min_words_per_line and len(words) < p.min_words_per_line:
            return "too_few_words"
        if p.max_word_len and len(line) > p.max_word_len and any(len(w) > p.max_word_len for w in words):
            return "too_long_word"
        low = line.lower()
        if p.reject_lorem_ipsum and "lorem ipsum" in low:
            return "doc:c4_lorem_ipsum"
        if p.drop_javascript_lines and "javascript" in low:
            return "javascript"
        if p.reject_curly_bracket and "{" in line:
            return "doc:c4_curly_bracket"
        if p.drop_policy_lines and any(s in low for s in _POLICY):
            return "policy"
        return None

    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        p = self.params
        kept: list[str] = []
        removed = Counter()
        # Tokens never span a newline, so the cleaned text's token count is the old count minus the
        # tokens of what was cut: later filters that need only the count skip re-tokenising.
        tokens_cut = 0
        for raw in doc.lines:
            line = raw.strip()
            if not line:
                continue
            if p.remove_citations and "[" in line:
                cleaned = _CITATION.sub("", line).strip()
                if cleaned != line:
                    tokens_cut += len(TOKEN_RE.findall(line)) - len(TOKEN_RE.findall(cleaned))
                    line = cleaned
            verdict = self.line_verdict(line) if line else "too_few_words"
            if verdict is None:
                kept.append(line)
            elif verdict.startswith("doc:"):
                signals["q_c4_lines_removed"] = sum(removed.values())
                return verdict[4:]
            else:
                removed[verdict] += 1
                tokens_cut += len(TOKEN_RE.findall(line))

        n_removed = sum(removed.values())
        signals["q_c4_lines_removed"] = n_removed
        for rule, n in removed.items():
            counters[f"quality.c4_line_{rule}"] += n
        new_text = "\n".join(kept)
        n_sentences = len(_SENTENCE_END.findall(new_text)) - len(_NOT_AN_END.findall(new_text))
        # A kept line that does not end a sentence is one more (an abbreviation at its end included).
        n_sentences += sum(1 for line in kept if not _SENTENCE_END.search(line[-3:]) or _ENDS_NOT_AN_END.search(line[-16:]))
        signals["q_c4_sentences"] = n_sentences
        if p.min_sentences and n_sentences < p.min_sentences:
            return "c4_too_few_sentences"
        if not kept:
            return "c4_empty_after_cleanup"
        if n_removed:
            counters["quality.c4_docs_changed"] += 1
            counters["quality.c4_lines_removed"] += n_removed
        doc.set_text(new_text, n_tokens=doc.n_tokens - tokens_cut)
        return None
