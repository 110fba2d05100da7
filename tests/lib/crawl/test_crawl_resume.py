"""A killed crawl resumes without refetching written pages; a finished crawl is a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.crawl import run_crawl
from tests.lib.crawl.trap_site import serve_traps

REPO = Path(__file__).resolve().parents[3]
HANG_TIMEOUT_S = 600  # for a crawl process that hangs: far beyond any healthy run, however loaded the machine


class Killed(Exception):
    pass


def _cfg(seed: str, max_pages: int = 12):
    return parse_config({"crawl": {
        "seeds": [seed], "max_pages": max_pages, "max_depth": 1000, "concurrency": 1, "pages_per_shard": 3,
        "connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 2.0, "allow_private_hosts": ["127.0.0.1"]}})


def _calendar_paths(site) -> list[str]:
    return [p for p in site.paths() if p.startswith("/calendar/")]


def _file_stamps(root: str) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.join(dirpath, f)] = st.st_mtime_ns
    return out


def test_killed_crawl_resumes_then_skips(tmp_path):
    out_dir = str(tmp_path / "00_crawl")
    fs = shards.filesystem(out_dir)
    with serve_traps() as (site, _second):
        cfg = _cfg(site.base + "/calendar/2024/1")

        def kill_after_two_shards(event):
            if event["shard"] == "part-00001":
                raise Killed()

        with pytest.raises(Killed):
            run_crawl(cfg, fs, out_dir, kill_after_two_shards)
        first = _calendar_paths(site)
        assert len(first) == 6
        assert shards.list_shards(fs, out_dir) == ["part-00000", "part-00001"]

        summary = run_crawl(cfg, fs, out_dir)
        assert summary == {"shards": 4, "pages": 12, "rejected": 0, "reasons": {}, "skipped": False}
        paths = _calendar_paths(site)
        assert len(paths) == 12
        assert max(Counter(paths).values()) == 1  # nothing written before the kill was fetched again
        assert site.paths().count("/robots.txt") == 2  # one per process lifetime, the cache is in memory

        assert sorted(os.listdir(os.path.join(out_dir, "_crawl_state"))) == ["done.json", "part-00003.json"]
        stamps = _file_stamps(out_dir)
        before = len(site.log)
        again = run_crawl(cfg, fs, out_dir)
        assert again["skipped"] is True and again["pages"] == 12
        assert len(site.log) == before  # no request at all
        assert _file_stamps(out_dir) == stamps  # nothing rewritten

        # A bigger budget is a different config: the crawl continues from its saved frontier.
        more = run_crawl(_cfg(site.base + "/calendar/2024/1", max_pages=15), fs, out_dir)
        assert more["pages"] == 15 and more["skipped"] is False
        paths = _calendar_paths(site)
        assert len(paths) == 15 and max(Counter(paths).values()) == 1
    ids = []
    for name in shards.list_shards(fs, out_dir):
        ids += shards.read_verified(fs, out_dir, name).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 15


@pytest.mark.slow
def test_sigkill_mid_crawl_then_resume(tmp_path):
    """A real process killed with SIGKILL between shards; the rerun refetches at most the unwritten tail."""
    out_dir = tmp_path / "00_crawl"
    with serve_traps() as (site, _second):
        seed = site.base + "/calendar/2024/1"
        cmd = [sys.executable, "-m", "crawl2model.cli", "crawl", "--seed", seed, "--out", str(out_dir),
               "--max-pages", "40", "--max-depth", "1000", "--delay", "0.05", "--allow-private", "127.0.0.1", "--quiet"]
        first_manifest = out_dir / "_manifests" / "part-00000.manifest.json"
        stderr_path = tmp_path / "crawl.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
        # Wait for the first complete shard or the process's own exit, however slow the machine;
        # only a crawl that hangs outright meets HANG_TIMEOUT_S, and the test then says so.
        give_up_at = time.monotonic() + HANG_TIMEOUT_S
        while not first_manifest.exists() and proc.poll() is None:
            if time.monotonic() > give_up_at:
                proc.kill()
                proc.wait()
                pytest.fail(f"the crawl wrote no shard in {HANG_TIMEOUT_S} s and did not exit; stderr:\n"
                            f"{stderr_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        if not first_manifest.exists():
            pytest.fail(f"the crawl exited with {proc.returncode} before writing its first shard; stderr:\n"
                        f"{stderr_path.read_text(errors='replace')[-3000:]}")
        written_before = len(_calendar_paths(site))
        fs = shards.filesystem(str(out_dir))
        done_shards = shards.list_shards(fs, str(out_dir))
        assert done_shards, "the crawl was killed before its first shard"
        rows_written = sum(shards.load_manifest(fs, str(out_dir), n)["counters"]["rows_in"] for n in done_shards)

        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
        assert result.returncode == 0, result.stderr
        paths = _calendar_paths(site)
        refetched = sum(c - 1 for c in Counter(paths).values())
        # Only pages fetched after the last checkpoint (not yet in a shard) may be fetched twice.
        assert refetched <= written_before - rows_written
        assert len(set(paths)) == 40
    assert shards.verify_stage_dir(fs, str(out_dir)) == []
