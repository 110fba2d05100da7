"""Helpers for end-to-end runs: a private config, data root and Prefect home per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_small_config(tmp: Path, **run_overrides) -> Path:
    """configs/small.yaml with its own data root and site port, for isolation from `make run`."""
    data = yaml.safe_load((REPO / "configs" / "small.yaml").read_text())
    data["run"]["data_root"] = str(tmp / "runs")
    data["run"].update(run_overrides)
    data["crawl"]["sample_site"]["port"] = free_port()
    # Relative paths in the config resolve against its folder: point them back at configs/.
    data["urlfilter"]["blocklist_files"] = [str(REPO / "configs" / p) for p in data["urlfilter"]["blocklist_files"]]
    path = tmp / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# Set on a worker machine, it would send every run of the tests to that data root (flows/common.py).
DATA_ROOT_ENV = "CRAWL2MODEL_DATA_ROOT"


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(tmp / "prefect-home")
    env.pop("PREFECT_API_URL", None)
    env.pop(DATA_ROOT_ENV, None)  # the config's data_root (a tmp dir) is where a test looks for its run
    return env


def run_cli(args: list[str], tmp: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawl2model.cli", *args], cwd=REPO, env=cli_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


