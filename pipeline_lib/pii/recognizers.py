"""Presidio recognizers for the PII stage, built offline and limited to the configured entities.

Everything here is a stock presidio recognizer or a small subclass of one, for three reasons:

- presidio's ``EmailRecognizer`` validates domains with the module-level ``tldextract.extract``,
  which downloads the public suffix list on first use; we use tldextract's bundled snapshot.
- presidio boosts weak matches with context words through spaCy lemmas, and a blank pipeline has
  no lemmas, so with a blank pipeline context never counts. ``ContextMixin`` looks at the plain
  words around a match instead, with presidio's numbers (+0.35, at least 0.4).
- the stock phone and card recognizers miss common written forms: phone numbers that the
  ``phonenumbers`` library does not consider valid for its regions (short local numbers, made-up
  area codes, "+44 7700 ..." drama numbers) and 19-digit, 2-series and 12-digit card numbers.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

import regex
import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

# The entities the fast path knows how to pre-filter; anything else (NER types) runs on whole texts.
PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN")

CONTEXT_BOOST = 0.35  # presidio's LemmaContextAwareEnhancer defaults
CONTEXT_MIN_SCORE = 0.4
CONTEXT_BEFORE = 40  # characters of context looked at before a match
CONTEXT_AFTER = 24  # and after it

_WORD = re.compile(r"[^\W\d_]+")
# Context words that say little on their own ("card number", "license number").
WEAK_CONTEXT = frozenset(["number", "no"])


@lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """tldextract on its bundled public suffix snapshot: no download, no cache directory."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def keyword_distances(text: str, start: int, end: int, keywords: set[str]) -> dict[str, int]:
    """For each keyword seen around a match, its distance in characters from the match."""
    found: dict[str, int] = {}
    lo = max(0, start - CONTEXT_BEFORE)
    for m in _WORD.finditer(text, lo, start):
        w = m.group().lower()
        if w in keywords:
            found[w] = min(found.get(w, 1 << 30), start - m.end())
    for m in _WORD.finditer(text, end, min(len(text), end + CONTEXT_AFTER)):
        w = m.group().lower()
        if w in keywords:
            found[w] = min(found.get(w, 1 << 30), m.start() - end)
    return found


def _char_before(text: str, pos: int) -> str:
    """The nearest non-blank character before ``pos`` (within a few), or ''."""
    i = pos - 1
    while i >= 0 and pos - i <= 3 and text[i] in " \t":
        i -= 1
    return text[i] if i >= 0 and pos - i <= 3 else ""


def digits_of(value: str) -> str:
    return "".join(ch for ch in value if ch.isdecimal())  # isdecimal: what int() accepts


class ContextMixin:
    """Context words raise a weak match (presidio's rule); ``negative_context`` words veto one."""

    context: list[str]
    negative_context: frozenset[str] = frozenset()

    def adjust_for_context(self, text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
        positive = {w.lower() for w in self.context}
        kept = []
        for r in results:
            near = keyword_distances(text, r.start, r.end, positive | self.negative_context)
            strong = min((d for w, d in near.items() if w in positive and w not in WEAK_CONTEXT), default=None)
            neg = min((d for w, d in near.items() if w in self.negative_context), default=None)
            # The nearer word wins ("license clerk ... Phone: 358 0594" is a phone number); a weak word
            # such as "number" never outweighs a negative one ("license number 6940579" is not).
            if neg is not None and (strong is None or neg < strong) \
                    and not self.keeps_despite_negative_context(text[r.start:r.end]):
                continue
            if near.keys() & positive and r.score < EntityRecognizer.MAX_SCORE:
                r.score = min(EntityRecognizer.MAX_SCORE, max(r.score + CONTEXT_BOOST, CONTEXT_MIN_SCORE))
            kept.append(r)
        return kept

    def keeps_despite_negative_context(self, value: str) -> bool:
        return False


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's e-mail recognizer, validating the domain without network access."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text).fqdn != ""


PHONE_CONTEXT = ["phone", "telephone", "tel", "mobile", "cell", "cellphone", "call", "calling", "fax", "office",
                 "desk", "contact", "dial", "hotline", "helpline", "whatsapp", "sms", "number", "reach",
                 "answering", "voicemail", "message"]
# Numbers near these words are some other identifier, not a phone number.
PHONE_NEGATIVE_CONTEXT = frozenset(["license", "licence", "passport", "ssn", "social", "iban", "isbn", "invoice",
                                    "order", "account", "routing", "card", "zip", "postal", "postcode", "serial"])
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DATE_LIKE = re.compile(r"(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})")
_YEAR_RANGE = re.compile(r"(?:1[89]|20)\d\d ?[-/] ?(?:(?:1[89]|20)\d\d|\d\d)")
_CURRENCY = frozenset("$€£¥₹₩")


class PhoneFormatRecognizer(ContextMixin, PatternRecognizer):
    """Phone numbers by their written shape: digit groups, optional +country, (0), (area), extension.

    An international number (``+`` and at least 9 digits) counts on its own; a national-looking one
    only with a phone context word nearby (its score 0.2 + 0.35).
    """

    negative_context = PHONE_NEGATIVE_CONTEXT
    _CORE = r"(?:\(0\)[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?(?:\d{1,5}(?:[ ./-]\d{2,8}){1,5}|\d{7,13})"
    _EXT = r"(?:[ ]?(?:x|ext\.?[ ]?)\d{1,5})?"
    PATTERNS = [
        Pattern("phone international", r"(?<![\w+])\+\d{1,3}[ .-]?" + _CORE + _EXT + r"(?![\w]|:\d)", 0.5),
        Pattern("phone national", r"(?<![\w+.-])" + _CORE + _EXT + r"(?![\w]|[.:-]\d)", 0.2),
    ]

    def __init__(self):
        super().__init__(supported_entity="PHONE_NUMBER", patterns=self.PATTERNS, context=PHONE_CONTEXT,
                         name="PhoneFormatRecognizer")

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        results = [r for r in super().analyze(text, entities, nlp_artifacts, regex_flags)
                   if _char_before(text, r.start) not in _CURRENCY]  # "$ 1 250 000" is an amount
        return self.adjust_for_context(text, results)

    def invalidate_result(self, pattern_text: str) -> bool:
        number = regex.split(r"(?:x|ext)", pattern_text, maxsplit=1)[0]
        digits = digits_of(number)
        if not 7 <= len(digits) <= 15 or len(set(digits)) == 1:
            return True
        core = number.strip()
        return bool(_DOTTED_QUAD.fullmatch(core) or _DATE_LIKE.match(core) or _YEAR_RANGE.fullmatch(core))

    def keeps_despite_negative_context(self, value: str) -> bool:
        return value.lstrip().startswith("+")


class PhoneNumberRecognizer(PhoneRecognizer):
    """Phone numbers: the written shape first, presidio's ``phonenumbers`` check only where needed.

    ``PhoneFormatRecognizer`` finds every phone-shaped digit group and decides the clear cases by
    itself (an international ``+`` number, or a phone word nearby). presidio's ``PhoneRecognizer``
    (the ``phonenumbers`` library, one full scan per region, by far the slowest recognizer) then
    only checks the undecided candidates, on a slice of text just around each one.
    """

    DECIDED = 0.5  # a shape match at least this strong needs no phonenumbers check
    # At ~0.5 ms a check, a numeric table (sports results, prices) would cost more than presidio on
    # the whole text; past this many undecided candidates in one text, the rest stay undecided
    # (phonenumbers calls most 8-10 digit numbers valid for some region anyway).
    MAX_CHECKS = 128

    def __init__(self, supported_regions: Iterable[str]):
        super().__init__(context=PHONE_CONTEXT, supported_regions=tuple(supported_regions))
        self.shape = PhoneFormatRecognizer()

    def analyze(self, text, entities, nlp_artifacts=None):
        results, checks = [], 0
        for cand in self.shape.analyze(text, entities):
            if cand.score >= self.DECIDED or checks >= self.MAX_CHECKS:
                results.append(cand)
                continue
            checks += 1
            # Just the candidate (its extension, if any, is already in it): more text lets
            # phonenumbers glue a neighbouring number on ("021-56692669  021-36...").
            lo, hi = max(0, cand.start - 3), min(len(text), cand.end + 1)
            verified = [r for r in super().analyze(text[lo:hi], entities, None)
                        if len(digits_of(text[lo + r.start:lo + r.end])) >= 7]  # "3369 24": rarely a phone
            for r in verified:
                r.start, r.end = r.start + lo, r.end + lo
            results += verified or [cand]
        for r in results:  # AnalyzerEngine looks results' recognizers up by id: name this one
            r.recognition_metadata = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                      RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
        return EntityRecognizer.remove_duplicates(results)


CARD_CONTEXT = CreditCardRecognizer.CONTEXT + ["debit", "payment", "pay", "amex", "charge", "billing"]


class WideCreditCardRecognizer(ContextMixin, CreditCardRecognizer):
    """presidio's card recognizer plus 2-series, 19-digit and (with context) 12-digit Maestro numbers.

    Every candidate must pass the Luhn check; 13-19 digits then count as cards (presidio's rule),
    12 digits only with a card context word.
    """

    PATTERNS = CreditCardRecognizer.PATTERNS + [
        Pattern("card digits", r"\b[2-6]\d{11,18}\b", 0.3),
        Pattern("card groups of four", r"\b[2-6]\d{3}(?:[- ]\d{4}){2}[- ]\d{1,7}\b", 0.3),
    ]

    def __init__(self):
        super().__init__(patterns=self.PATTERNS, context=CARD_CONTEXT)

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        # A long number straight after "/", "=" or ":" is an id in a URL or a key=value, not a card
        # (tweet ids are 19 digits, and one in ten passes the Luhn check).
        results = [r for r in super().analyze(text, entities, nlp_artifacts, regex_flags)
                   if text[r.start - 1:r.start] not in ("/", "=", ":", "_")]
        return self.adjust_for_context(text, results)

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = digits_of(pattern_text)
        if not 12 <= len(digits) <= 19 or not super().validate_result(digits):
            return False
        return None if len(digits) == 12 else True


class ContextSsnRecognizer(ContextMixin, UsSsnRecognizer):
    """presidio's SSN recognizer with word context (its weak patterns count next to "SSN")."""

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        return self.adjust_for_context(text, super().analyze(text, entities, nlp_artifacts, regex_flags))


def build_recognizers(entities: list[str], phone_regions: list[str]) -> dict[str, list[EntityRecognizer]]:
    """Entity -> the recognizers that find it (only the configured pattern entities)."""
    factories = {
        "EMAIL_ADDRESS": lambda: [OfflineEmailRecognizer()],
        "PHONE_NUMBER": lambda: [PhoneNumberRecognizer(phone_regions)],
        "IP_ADDRESS": lambda: [IpRecognizer()],
        "CREDIT_CARD": lambda: [WideCreditCardRecognizer()],
        # IBANs are written in lower case too; presidio's registry compiles its patterns with IGNORECASE.
        "IBAN_CODE": lambda: [IbanRecognizer(regex_flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)],
        "US_SSN": lambda: [ContextSsnRecognizer()],
    }
    return {entity: factories[entity]() for entity in entities if entity in factories}
