"""Scope 'index': a later run drops documents an earlier run kept, via a directory or a real Redis."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.dedup import run_clustering, run_filter_shard, run_signatures_shard
from tests.e2e.support import free_port
from tests.lib.dedup.docs import article, docs_table, lightly_edited, write_input


@pytest.fixture()
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis index is untested")
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                             "--save", "", "--appendonly", "no", "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    pytest.fail(f"redis-server exited with {proc.returncode}")
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


A, B, C = article(11), article(12), article(13)


def run_partition(tmp_path, partition: str, rows, index_url: str) -> tuple[dict, set[str], dict]:
    """One whole dedup run of one partition (one input shard); returns clusters summary, kept ids, rejected rows."""
    cfg = parse_config({"run": {"partition": partition},
                        "dedup": {"scope": "index", "index_url": index_url, "index_namespace": "t"}})
    fs = shards.filesystem(str(tmp_path))
    base = f"{tmp_path}/{partition}"
    write_input(fs, f"{base}/in", "part-00000", docs_table(rows))
    run_signatures_shard(cfg, fs, f"{base}/in", f"{base}/sig", "part-00000")
    summary = run_clustering(cfg, fs, f"{base}/sig", f"{base}/clusters")
    run_filter_shard(cfg, fs, f"{base}/in", f"{base}/clusters", f"{base}/out", "part-00000")
    kept = set(shards.read_verified(fs, f"{base}/out", "part-00000").column("id").to_pylist())
    manifest = shards.load_manifest(fs, f"{base}/out", "part-00000")
    rejected = {}
    if "rejected" in manifest["files"]:
        rejected = {r["id"]: r for r in shards.read_verified(fs, f"{base}/out", "part-00000", which="rejected").to_pylist()}
    return summary, kept, rejected


def check_runs_across_index(tmp_path, index_url: str) -> None:
    first, kept1, _ = run_partition(tmp_path, "day1", [("a1", A, 1), ("b1", B, 2), ("b1-copy", B, 3)], index_url)
    assert kept1 == {"a1", "b1"}
    second, kept2, rejected2 = run_partition(
        tmp_path, "day2", [("a2", A.lower(), 5), ("b2", lightly_edited(B, 3), 6), ("c2", C, 7), ("c2-copy", C, 8)], index_url)
    assert kept2 == {"c2"}
    assert rejected2["a2"]["reject_reason"] == "exact_duplicate" and rejected2["a2"]["dup_kept_id"] == "a1"
    assert rejected2["b2"]["reject_reason"] == "near_duplicate" and rejected2["b2"]["dup_kept_id"] == "b1"
    assert rejected2["c2-copy"]["dup_kept_id"] == "c2"
    assert second["rejected"] == 3
    # Rerunning an earlier partition (a backfill) ignores its own entries: same outcome as before.
    shutil.rmtree(tmp_path / "day1")
    again, kept1_again, _ = run_partition(tmp_path, "day1", [("a1", A, 1), ("b1", B, 2), ("b1-copy", B, 3)], index_url)
    assert kept1_again == {"a1", "b1"} and not again["skipped"]


def test_directory_index_drops_documents_kept_by_earlier_runs(tmp_path):
    check_runs_across_index(tmp_path, str(tmp_path / "index"))


def test_redis_index_drops_documents_kept_by_earlier_runs(tmp_path, redis_url):
    check_runs_across_index(tmp_path, redis_url)
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        names = {k.decode() for k in client.keys("t:*")}
        assert any(n.endswith(":exact") for n in names) and any(n.endswith(":doc") for n in names)
        assert client.hlen(next(n for n in names if n.endswith(":doc"))) == 3  # a1, b1, c2
    finally:
        client.close()


def test_scope_index_requires_an_index_url():
    from pipeline_lib.config import ConfigError

    with pytest.raises(ConfigError, match="index_url"):
        parse_config({"dedup": {"scope": "index"}})
