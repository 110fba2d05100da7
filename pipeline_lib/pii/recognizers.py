"""Presidio recognizers for the PII stage, built offline and limited to the configured entities.

Everything here is a stock presidio recognizer or a small subclass of one. Two reasons to subclass:
presidio's ``EmailRecognizer`` validates domains with the module-level ``tldextract.extract``, which
downloads the public suffix list on first use (we use tldextract's bundled snapshot instead), and the
stock phone and credit card recognizers miss common written formats (see ``extra_patterns``).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

log = logging.getLogger(__name__)

# The entities the fast path knows how to pre-filter; anything else (NER types) runs on whole texts.
PATTERN_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN")


@lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """tldextract on its bundled public suffix snapshot: no download, no cache directory."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """presidio's email recognizer, validating the domain without network access."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text).fqdn != ""


def build_recognizers(entities: list[str], phone_regions: list[str]) -> dict[str, list[EntityRecognizer]]:
    """Entity -> the recognizers that find it (only the configured pattern entities)."""
    factories = {
        "EMAIL_ADDRESS": lambda: [OfflineEmailRecognizer()],
        "PHONE_NUMBER": lambda: [PhoneRecognizer(supported_regions=tuple(phone_regions))],
        "IP_ADDRESS": lambda: [IpRecognizer()],
        "CREDIT_CARD": lambda: [CreditCardRecognizer()],
        "IBAN_CODE": lambda: [IbanRecognizer()],
        "US_SSN": lambda: [UsSsnRecognizer()],
    }
    out: dict[str, list[EntityRecognizer]] = {}
    for entity in entities:
        if entity in factories:
            out[entity] = factories[entity]()
    return out


__all__ = ["PATTERN_ENTITIES", "OfflineEmailRecognizer", "build_recognizers", "offline_tld_extractor",
           "Pattern", "PatternRecognizer"]
