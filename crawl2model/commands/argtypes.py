"""argparse types shared by the commands: a bad value is a usage error (exit 2) before any work."""

from __future__ import annotations

import argparse
import json


def at_least(kind, low):
    """An argparse type: ``kind`` of the value, refused (a usage error) below ``low``."""
    def parse(text: str):
        value = kind(text)
        if not value >= low:  # "nan" and "inf" parse as floats; nan is never >= anything
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid int value" message
    return parse


def json_object(text: str) -> dict:
    """``--storage-options``: a JSON object (a list or a number reached fsspec as a TypeError)."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object ({{...}}), got {text}")
    return value
