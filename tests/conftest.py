"""Shared fixtures: where the real public data lives, a clean environment for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# The same offline settings the CLI applies, before any test imports prefect or tiktoken.
from crawl2model.env import configure_environment  # noqa: E402

configure_environment()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a clean skip when this checkout has no shared data beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiktoken_cache(shared_data: Path) -> Path:
    cache = shared_data / "tiktoken-cache"
    if not cache.is_dir():
        pytest.skip("tiktoken cache not present")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return cache
