"""Finding PII spans with presidio recognizers, fast.

Plain presidio runs every recognizer over the whole text after a spaCy pass. Almost all web text
holds no PII, and what there is sits next to characters we can spot with one cheap scan: an ``@``
for e-mail addresses, a run of digits for phone, card, IBAN and SSN numbers, dotted quads or colons
for IP addresses. The fast path finds those candidate spots, cuts a small window around each (wide
enough for the recognizers' word boundaries, prefixes and extensions), and calls the presidio
recognizers directly on the windows. A text with no candidate costs one or two regex scans.

``fast_path: false`` runs the very same recognizers through presidio's ``AnalyzerEngine`` on the
whole text, which is what the recall of the fast path is checked against.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import SpacyNlpEngine

from pipeline_lib.config import PiiConfig
from pipeline_lib.pii.recognizers import PATTERN_ENTITIES, build_recognizers

log = logging.getLogger(__name__)

# A run of digits, allowing up to three separator characters between digits ("+1 (555) 123-4567").
_DIGIT_RUN = re.compile(r"\d(?:[ \t().\-/]{0,3}\d)+")
_DOTTED_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}")
_IBAN_HINT = re.compile(r"[A-Za-z]{2}\d{2}")  # every IBAN opens with its country code and check digits
# Fewest digits a candidate run needs before an entity's recognizer is worth calling.
_MIN_DIGITS = {"PHONE_NUMBER": 7, "CREDIT_CARD": 12, "IBAN_CODE": 7, "US_SSN": 9}
_WINDOW_MARGIN = 48  # chars kept on each side of a candidate: context words, IBAN prefix, "x123" extensions
_SNAP_LIMIT = 24  # how much further a window edge may move to reach whitespace
_EMAIL_REACH = 256  # longest local part / domain we look for around an '@'


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    entity_type: str
    score: float


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """presidio's spaCy engine on ``spacy.blank(lang)`` or an installed model: never downloads."""

    def __init__(self, model_name: str | None = None, lang: str = "en"):
        super().__init__(models=[{"lang_code": lang, "model_name": model_name or f"blank:{lang}"}])
        self._model_name, self._lang = model_name, lang

    def load(self) -> None:
        if self._model_name is None:
            self.nlp = {self._lang: spacy.blank(self._lang)}
            return
        if not (spacy.util.is_package(self._model_name) or Path(self._model_name).is_dir()):
            raise RuntimeError(f"pii.nlp_model {self._model_name!r} is not installed (we never download models)")
        self.nlp = {self._lang: spacy.load(self._model_name)}


def _snap_left(text: str, pos: int) -> int:
    lo = max(0, pos - _SNAP_LIMIT)
    ws = max(text.rfind(" ", lo, pos), text.rfind("\n", lo, pos))
    return ws + 1 if ws >= 0 else pos


def _snap_right(text: str, pos: int) -> int:
    hi = min(len(text), pos + _SNAP_LIMIT)
    cands = [i for i in (text.find(" ", pos, hi), text.find("\n", pos, hi)) if i >= 0]
    return min(cands) if cands else pos


def _merge(windows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _window(text: str, start: int, end: int, margin: int = _WINDOW_MARGIN) -> tuple[int, int]:
    lo, hi = max(0, start - margin), min(len(text), end + margin)
    if lo > 0:
        lo = _snap_left(text, lo)
    if hi < len(text):
        hi = _snap_right(text, hi)
    return lo, hi


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep the best of overlapping spans (any types): higher score, then longer, then earlier.

    Greedy in that order: a span is kept unless it overlaps one already kept. A kept span ``k``
    overlaps ``[s, e)`` when ``k.start < e`` and ``k.end > s``, so the test is "the largest end
    among kept spans starting before ``e`` exceeds ``s``": a prefix maximum, kept in a Fenwick tree
    over the (compressed) start positions. O(n log n) in the number of spans, where comparing each
    span with every kept one was quadratic (a page of dense PII took minutes).
    """
    if len(spans) < 2:
        return sorted(spans)
    starts = sorted({s.start for s in spans})
    index = {x: i for i, x in enumerate(starts)}
    size = len(starts)
    tree = [-1] * (size + 1)  # 1-based; tree[i]: max end of kept spans over a block of start slots
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        # Largest end among kept spans whose start is < span.end (slots 0 .. q-1).
        q, best = bisect_left(starts, span.end), -1
        while q > 0:
            if tree[q] > best:
                best = tree[q]
            q &= q - 1
        if best > span.start:
            continue
        kept.append(span)
        i, end = index[span.start] + 1, span.end
        while i <= size:
            if tree[i] < end:
                tree[i] = end
            i += i & -i
    return sorted(kept)


class Detector:
    """Finds PII spans of the configured entities in a text."""

    def __init__(self, cfg: PiiConfig):
        self.entities = list(dict.fromkeys(cfg.entities))
        self.threshold = cfg.score_threshold
        self.fast_path = cfg.fast_path
        self.recognizers = build_recognizers(self.entities, cfg.phone_regions)
        self._digit_entities = [e for e in self.entities if e in _MIN_DIGITS]
        self._min_digits = min((_MIN_DIGITS[e] for e in self._digit_entities), default=0)
        # Entities no pattern recognizer covers (PERSON, LOCATION...) need a real NER model.
        self.ner_entities = [e for e in self.entities if e not in PATTERN_ENTITIES]
        self._nlp_engine: BlankSpacyNlpEngine | None = None
        self._ner: EntityRecognizer | None = None
        if self.ner_entities and cfg.nlp_model:
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            self._nlp_engine = BlankSpacyNlpEngine(cfg.nlp_model)
            self._nlp_engine.load()
            self._ner = SpacyRecognizer(supported_entities=self.ner_entities)
        elif self.ner_entities:
            log.warning("pii: %s need a spaCy NER model (pii.nlp_model); they will not be scrubbed",
                        ", ".join(self.ner_entities))
        self._engine: AnalyzerEngine | None = None
        if not self.fast_path:
            self._engine = self._build_engine(cfg.nlp_model)

    def _build_engine(self, nlp_model: str | None) -> AnalyzerEngine:
        registry = RecognizerRegistry(supported_languages=["en"])
        for recs in self.recognizers.values():
            for rec in recs:
                registry.add_recognizer(rec)
        if self._ner is not None:
            registry.add_recognizer(self._ner)
        engine = self._nlp_engine or BlankSpacyNlpEngine(nlp_model)
        return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])

    # -- public -------------------------------------------------------------------------------

    def find(self, text: str | None) -> list[Span]:
        if not text:
            return []
        if self._engine is not None:
            results = self._engine.analyze(text, language="en", entities=self.entities,
                                           score_threshold=self.threshold)
            return resolve_overlaps([self._span(r, 0) for r in results])
        spans: list[Span] = []
        if "EMAIL_ADDRESS" in self.recognizers and "@" in text:
            spans += self._run_windows(text, self._email_windows(text), ["EMAIL_ADDRESS"])
        if "IP_ADDRESS" in self.recognizers:
            spans += self._run_windows(text, self._ip_windows(text), ["IP_ADDRESS"])
        if self._digit_entities:
            spans += self._run_digit_windows(text)
        if self._ner is not None:
            artifacts = self._nlp_engine.process_text(text, "en")
            spans += self._collect(self._ner.analyze(text, self.ner_entities, artifacts), 0)
        return resolve_overlaps(spans)

    # -- candidate windows ----------------------------------------------------------------------

    @staticmethod
    def _email_windows(text: str) -> list[tuple[int, int]]:
        windows, at = [], text.find("@")
        while at >= 0:
            windows.append((_word_edge_left(text, at), _word_edge_right(text, at + 1)))
            at = text.find("@", at + 1)
        return _merge(windows)

    @staticmethod
    def _ip_windows(text: str) -> list[tuple[int, int]]:
        hits = [(m.start(), m.end()) for m in _DOTTED_QUAD.finditer(text)]
        if ":" in text:
            hits += [(m.start(), m.end()) for m in _IPV6_HINT.finditer(text)]
        return _merge(_window(text, s, e) for s, e in hits)

    def _run_digit_windows(self, text: str) -> list[Span]:
        windows: list[tuple[tuple[int, int], list[str]]] = []
        for m in _DIGIT_RUN.finditer(text):
            digits = sum(ch.isdigit() for ch in m.group())
            if digits < self._min_digits:
                continue
            wanted = [e for e in self._digit_entities if digits >= _MIN_DIGITS[e]]
            windows.append((_window(text, m.start(), m.end()), wanted))
        if not windows:
            return []
        # Merge overlapping windows, unioning the entities each one needs.
        merged: list[tuple[int, int, set[str]]] = []
        for (s, e), wanted in sorted(windows):
            if merged and s <= merged[-1][1]:
                ms, me, ents = merged[-1]
                merged[-1] = (ms, max(me, e), ents | set(wanted))
            else:
                merged.append((s, e, set(wanted)))
        spans: list[Span] = []
        for s, e, ents in merged:
            if "IBAN_CODE" in ents and not _IBAN_HINT.search(text, s, e):
                ents.discard("IBAN_CODE")
            spans += self._run_windows(text, [(s, e)], [x for x in self._digit_entities if x in ents])
        return spans

    def _run_windows(self, text: str, windows: list[tuple[int, int]], entities: list[str]) -> list[Span]:
        spans: list[Span] = []
        for lo, hi in windows:
            chunk = text[lo:hi]
            for entity in entities:
                for rec in self.recognizers[entity]:
                    spans += self._collect(rec.analyze(chunk, [entity], None), lo)
        return spans

    # -- helpers --------------------------------------------------------------------------------

    def _collect(self, results: list[RecognizerResult] | None, offset: int) -> list[Span]:
        return [self._span(r, offset) for r in EntityRecognizer.remove_duplicates(results or [])
                if r.score >= self.threshold and r.entity_type in self.entities]

    @staticmethod
    def _span(r: RecognizerResult, offset: int) -> Span:
        return Span(r.start + offset, r.end + offset, r.entity_type, float(r.score))


def _word_edge_left(text: str, pos: int) -> int:
    lo = max(0, pos - _EMAIL_REACH)
    i = pos
    while i > lo and not text[i - 1].isspace():
        i -= 1
    return i


def _word_edge_right(text: str, pos: int) -> int:
    hi = min(len(text), pos + _EMAIL_REACH)
    i = pos
    while i < hi and not text[i].isspace():
        i += 1
    return i


def plain_presidio_analyzer() -> AnalyzerEngine:
    """presidio used plainly: the default registry (all predefined recognizers) on a blank pipeline.

    The one change: its e-mail recognizer is swapped for the offline one (same regex, same domain
    check) because the stock one would try to download the public suffix list.
    """
    from pipeline_lib.pii.recognizers import OfflineEmailRecognizer

    engine = AnalyzerEngine(nlp_engine=BlankSpacyNlpEngine())
    engine.registry.remove_recognizer("EmailRecognizer")
    engine.registry.add_recognizer(OfflineEmailRecognizer())
    return engine
