"""Process-wide settings applied before Prefect or any library is imported.

No network at run time except the crawler's own fetches: Prefect telemetry off, tldextract and
tiktoken pointed at files on disk. Each setting only fills in what the user has not set.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def configure_environment() -> None:
    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_UI_ENABLED": "true",
        "DO_NOT_TRACK": "1",
        # Keep the embedded Prefect's SQLite database with the project so `make ui` can show past runs.
        "PREFECT_HOME": str(REPO_ROOT / ".prefect"),
        # INFO reaches the UI; the terminal shows warnings only (our own progress lines are printed).
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        # The embedded server gets 20 s to start by default; a loaded machine can need more.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    shared_cache = REPO_ROOT.parent / "shared" / "data" / "tiktoken-cache"
    if shared_cache.is_dir():
        defaults["TIKTOKEN_CACHE_DIR"] = str(shared_cache)
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
