"""Replacing found PII spans with presidio-anonymizer operators, chosen per entity in config.

Operators: ``placeholder`` (a typed tag such as ``<EMAIL>``), ``fake`` (fixed, harmless values
used in turn, like FineWeb's ``email@example.com`` and its list of non-responding IPs), ``hash``
(salted sha256 of the value) and ``mask`` (every character replaced by ``mask_char``).
"""

from __future__ import annotations

import ipaddress
from typing import Callable

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from pipeline_lib.config import PiiConfig
from pipeline_lib.pii.detect import Span

DEFAULT_PLACEHOLDERS = {
    "EMAIL_ADDRESS": "<EMAIL>",
    "PHONE_NUMBER": "<PHONE>",
    "IP_ADDRESS": "<IP>",
    "CREDIT_CARD": "<CREDIT_CARD>",
    "IBAN_CODE": "<IBAN>",
    "US_SSN": "<SSN>",
}

# FineWeb (datatrove PIIFormatter) replaces e-mails and IPs with these, cycling through them.
# For the other entities: reserved or published test values that belong to nobody.
FAKE_VALUES: dict[str, tuple[str, ...]] = {
    "EMAIL_ADDRESS": ("email@example.com", "firstname.lastname@example.org"),
    "IP_ADDRESS": ("22.214.171.124", "126.96.36.199", "188.8.131.52", "184.108.40.206", "220.127.116.11",
                   "18.104.22.168"),
    "PHONE_NUMBER": ("+1-202-555-0100", "+1-202-555-0143"),  # 555-01xx: reserved for fiction
    "CREDIT_CARD": ("4111 1111 1111 1111", "5555 5555 5555 4444"),  # card networks' test numbers
    "IBAN_CODE": ("GB82WEST12345698765432", "DE89370400440532013000"),  # the standards' examples
    "US_SSN": ("078-05-1120", "219-09-9999"),  # SSA-voided sample numbers
}

_MASK_ALL = 10**6  # presidio's mask operator masks at most this many characters


def is_private_ip(value: str) -> bool:
    """True for addresses FineWeb keeps: anything not globally routable (private, loopback, reserved)."""
    try:
        return not ipaddress.ip_interface(value.strip()).ip.is_global
    except ValueError:
        return False


def placeholder_for(entity: str, overrides: dict[str, str]) -> str:
    return overrides.get(entity) or DEFAULT_PLACEHOLDERS.get(entity) or f"<{entity}>"


class Anonymizer:
    """Applies the configured operator of each entity to a text's spans."""

    def __init__(self, cfg: PiiConfig):
        self.cfg = cfg
        self.engine = AnonymizerEngine()
        self.operator_of = {e: cfg.operators.get(e, cfg.operator) for e in cfg.entities}

    def replaceable(self, text: str, spans: list[Span]) -> tuple[list[Span], int]:
        """The spans to replace, and how many private IPs were kept (when configured)."""
        if not self.cfg.keep_private_ips:
            return spans, 0
        keep = [s for s in spans if not (s.entity_type == "IP_ADDRESS" and is_private_ip(text[s.start:s.end]))]
        return keep, len(spans) - len(keep)

    def anonymize(self, text: str, spans: list[Span]) -> str:
        if not spans:
            return text
        results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
        operators = {e: self._operator(e) for e in {s.entity_type for s in spans}}
        return self.engine.anonymize(text, results, operators, merge_entities_with_spaces=False).text

    def _operator(self, entity: str) -> OperatorConfig:
        kind = self.operator_of.get(entity, self.cfg.operator)
        if kind == "fake" and entity in FAKE_VALUES:
            return OperatorConfig("custom", {"lambda": _cycler(FAKE_VALUES[entity])})
        if kind == "hash":
            params = {"hash_type": "sha256"}
            if self.cfg.hash_salt:
                params["salt"] = self.cfg.hash_salt
            return OperatorConfig("hash", params)
        if kind == "mask":
            return OperatorConfig("mask", {"masking_char": self.cfg.mask_char, "chars_to_mask": _MASK_ALL,
                                           "from_end": False})
        return OperatorConfig("replace", {"new_value": placeholder_for(entity, self.cfg.placeholders)})


def _cycler(values: tuple[str, ...]) -> Callable[[str], str]:
    """A fresh per-document cycle, so a document's output does not depend on what ran before it."""
    state = {"i": 0}

    def next_value(_original: str) -> str:
        value = values[state["i"] % len(values)]
        state["i"] += 1
        return value

    return next_value
