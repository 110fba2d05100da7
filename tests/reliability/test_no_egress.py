"""No egress: the whole small pipeline runs with a guard that refuses any non-loopback connection.

The guard (pipeline_lib/guard.py) is installed in every Python process of the run, workers and the
embedded Prefect server included, by a ``sitecustomize`` on PYTHONPATH; each attempt to reach
another machine (connect, sendto, DNS lookup) is refused and logged. The first tests prove the guard
catches what we worry about (tldextract's suffix-list refresh, an HTTP client, a raw socket); the
slow one runs ``crawl2model run`` under it and asserts nothing was tried.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline_lib.guard import read_attempts
from tests.e2e.support import REPO, cli_env, write_small_config

SITE_DIR = Path(__file__).resolve().parent / "egress_site"


def guarded_env(tmp: Path, log: Path) -> dict[str, str]:
    env = cli_env(tmp)
    env["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["CRAWL2MODEL_NO_EGRESS"] = "1"
    env["CRAWL2MODEL_EGRESS_LOG"] = str(log)
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # busy CI machines start it slowly
    return env


def run_guarded(code: str, tmp: Path, log: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=guarded_env(tmp, log),
                          capture_output=True, text=True, timeout=300)


def test_guard_refuses_and_logs_real_egress_attempts(tmp_path):
    log = tmp_path / "egress.jsonl"
    proc = run_guarded("""
        import socket, requests, tldextract
        from pipeline_lib.guard import EgressBlocked
        outcomes = []
        try:
            socket.create_connection(("93.184.215.14", 80), timeout=2)
        except EgressBlocked:
            outcomes.append("raw_blocked")
        try:
            requests.get("http://example.com/", timeout=2)
        except requests.exceptions.ConnectionError:
            outcomes.append("requests_blocked")
        # tldextract with its defaults refreshes the public-suffix list over HTTPS; the guard sees it.
        ext = tldextract.TLDExtract(cache_dir=None)
        ext("https://news.bbc.co.uk/a")
        # Loopback stays allowed: a local listener accepts our connection.
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        socket.create_connection(srv.getsockname(), timeout=2).close()
        outcomes.append("loopback_ok")
        print(",".join(outcomes))
    """, tmp_path, log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "raw_blocked,requests_blocked,loopback_ok"
    attempts = [a for a in read_attempts(str(log)) if a["kind"] != "installed"]
    targets = " ".join(a["target"] for a in attempts)
    assert "93.184.215.14" in targets and "example.com" in targets
    assert "publicsuffix.org" in targets, targets  # tldextract's default suffix-list URLs
    assert not [a for a in attempts if "127.0.0.1" in a["target"]]


def test_guard_reaches_spawned_worker_processes(tmp_path):
    log = tmp_path / "egress.jsonl"
    # socket.create_connection pickles by reference; in the worker it resolves the name through the guard.
    proc = run_guarded("""
        import socket
        from pipeline_lib import workers
        from pipeline_lib.guard import EgressBlocked
        if __name__ == "__main__":
            try:
                workers.call(1, socket.create_connection, ("example.org", 443), 2)
                print("connected")
            except EgressBlocked:
                print("EgressBlocked")
            finally:
                workers.shutdown()
    """, tmp_path, log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "EgressBlocked"
    pids = {a["pid"] for a in read_attempts(str(log)) if a["kind"] == "installed"}
    assert len(pids) >= 2, "the spawned worker did not load the guard"


@pytest.mark.slow
def test_whole_small_pipeline_tries_no_egress(tmp_path, tiktoken_cache):
    # tiktoken_cache: the gpt2 vocabulary on disk (the run must not download it), else a clean skip.
    config = write_small_config(tmp_path)
    # The pretrained tokenizer path goes through tiktoken's loader (which would download without a cache).
    data = yaml.safe_load(config.read_text())
    data["tokenize"] = {"source": "pretrained", "encoding": "gpt2"}
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "egress.jsonl"
    proc = subprocess.run([sys.executable, "-m", "crawl2model.cli", "run", "--config", str(config)], cwd=REPO,
                          env=guarded_env(tmp_path, log), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    entries = read_attempts(str(log))
    attempts = [a for a in entries if a["kind"] != "installed"]
    assert not attempts, "\n".join(f"{a['kind']} {a['target']} <- {a['stack'][-4:]}" for a in attempts)
    guarded = [a for a in entries if a["kind"] == "installed"]
    # The CLI, its spawned shard workers and the extractor helper each loaded the guard.
    assert len({a["pid"] for a in guarded}) >= 3, guarded
    assert any("spawn_main" in " ".join(a["argv"]) or "multiprocessing" in " ".join(a["argv"]) for a in guarded), guarded
    run_dir = tmp_path / "runs" / "small" / "sample"
    assert list((run_dir / "07_tokens" / "_manifests").glob("part-*.manifest.json"))
