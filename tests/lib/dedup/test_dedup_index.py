"""Scope 'index': a later run drops documents an earlier run kept, via a directory or a real Redis."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.dedup import run_clustering, run_filter_shard, run_signatures_shard
from pipeline_lib.dedup.index import DedupIndex, IndexBusy, open_index
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


def index_config(partition: str, index_url: str, **dedup):
    return parse_config({"run": {"partition": partition},
                         "dedup": {"scope": "index", "index_url": index_url, "index_namespace": "t", **dedup}})


def run_partition(tmp_path, partition: str, rows, index_url: str, **dedup) -> tuple[dict, set[str], dict]:
    """One whole dedup run of one partition (one input shard); returns clusters summary, kept ids, rejected rows."""
    cfg = index_config(partition, index_url, **dedup)
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


def check_parallel_runs_take_turns(tmp_path, index_url: str, monkeypatch) -> None:
    """day1 is paused between its lookups and its add; day2, started meanwhile, must wait for day1's
    add and then drop day1's documents. Without the lock day2 would look up first and keep them too."""
    at_add, go_on = threading.Event(), threading.Event()
    real_adds = {cls: cls.__dict__["add"] for cls in DedupIndex.__subclasses__()}

    def paused_add(self, run_key, *rest):
        if run_key.endswith("/day1"):
            at_add.set()
            assert go_on.wait(60)
        return real_adds[type(self)](self, run_key, *rest)

    for cls in real_adds:
        monkeypatch.setattr(cls, "add", paused_add)
    results: dict[str, tuple] = {}

    def run(partition, rows):
        results[partition] = run_partition(tmp_path, partition, rows, index_url)

    day1 = threading.Thread(target=run, args=("day1", [("a1", A, 1), ("b1", B, 2)]))
    day2 = threading.Thread(target=run, args=("day2", [("a2", A, 5), ("b2", lightly_edited(B, 3), 6), ("c2", C, 7)]))
    day1.start()
    try:
        assert at_add.wait(60), "day1 never reached its add"
        day2.start()
        day2.join(timeout=3)
        assert day2.is_alive(), "day2 matched against the index while day1 was between its lookup and its add"
    finally:
        go_on.set()
        day1.join(60)
        if day2.is_alive() or day2.ident:
            day2.join(60)
    assert results["day1"][1] == {"a1", "b1"}
    _, kept2, rejected2 = results["day2"]
    assert kept2 == {"c2"}
    assert rejected2["a2"]["dup_kept_id"] == "a1" and rejected2["b2"]["dup_kept_id"] == "b1"


def test_directory_index_runs_take_turns(tmp_path, monkeypatch):
    check_parallel_runs_take_turns(tmp_path, str(tmp_path / "index"), monkeypatch)


def test_redis_index_runs_take_turns(tmp_path, redis_url, monkeypatch):
    check_parallel_runs_take_turns(tmp_path, redis_url, monkeypatch)


@pytest.mark.parametrize("backend", ["directory", "redis"])
def test_a_run_that_waits_too_long_for_the_index_fails_clearly(tmp_path, backend, request):
    url = str(tmp_path / "index") if backend == "directory" else request.getfixturevalue("redis_url")
    holder = open_index(index_config("day1", url))
    with holder.exclusive(5):
        with pytest.raises(IndexBusy, match="index_lock_wait_seconds"):
            run_partition(tmp_path, "day2", [("a2", A, 5)], url, index_lock_wait_seconds=0.3)
    holder.close()
    # Once the holder lets go, the same run goes through.
    _, kept, _ = run_partition(tmp_path, "day2b", [("a2", A, 5)], url, index_lock_wait_seconds=0.3)
    assert kept == {"a2"}


def test_a_lost_redis_lock_fails_the_step_before_it_writes(redis_url):
    import redis

    index = open_index(index_config("day1", redis_url))
    client = redis.Redis.from_url(redis_url)
    try:
        with index.exclusive(5):
            index.renew()  # held: renewing is fine
            lock_keys = [k for k in client.keys("t:*") if k.endswith(b":lock")]
            assert len(lock_keys) == 1
            client.delete(*lock_keys)  # as if the TTL ran out while this run stalled
            with pytest.raises(IndexBusy, match="lost the dedup index lock"):
                index.renew()
    finally:
        index.close()
        client.close()


def test_a_killed_index_write_is_never_read_as_a_run(tmp_path):
    # A kill between the temp write and the rename left .tmp-*.parquet beside the run's file: a
    # rerun dropped its own documents as duplicates of themselves, and a cut-short copy made every
    # later partition fail on its bytes.
    url = str(tmp_path / "index")
    _, kept, _ = run_partition(tmp_path, "day1", [("a1", A, 1), ("b1", B, 2)], url)
    assert kept == {"a1", "b1"}
    [done] = list((tmp_path / "index").rglob("day1.parquet"))
    whole = done.parent / ".tmp-0123456789abcdef0123456789abcdef~999999~gone~day1.parquet"
    whole.write_bytes(done.read_bytes())
    (done.parent / ".tmp-fedcba9876543210fedcba9876543210~999998~gone~day9.parquet").write_bytes(done.read_bytes()[:100])
    shutil.rmtree(tmp_path / "day1")
    _, kept, rejected = run_partition(tmp_path, "day1", [("a1", A, 1), ("b1", B, 2)], url)
    assert kept == {"a1", "b1"} and rejected == {}
    _, kept, rejected = run_partition(tmp_path, "day2", [("b2", B, 3), ("c2", C, 4)], url)
    assert kept == {"c2"} and rejected["b2"]["dup_kept_id"] == "b1"


def test_runs_with_and_without_near_dedup_share_a_directory_index(tmp_path):
    # A near: false run writes no band or signature columns; reading both kinds of file failed.
    url = str(tmp_path / "index")
    run_partition(tmp_path, "day1", [("a1", A, 1)], url, near=False)
    run_partition(tmp_path, "day2", [("b2", B, 2)], url)
    _, kept, rejected = run_partition(tmp_path, "day3", [("a3", A, 3), ("b3", lightly_edited(B, 1), 3),
                                                         ("c3", C, 3)], url)
    assert kept == {"c3"}
    assert (rejected["a3"]["reject_reason"], rejected["a3"]["dup_kept_id"]) == ("exact_duplicate", "a1")
    assert (rejected["b3"]["reject_reason"], rejected["b3"]["dup_kept_id"]) == ("near_duplicate", "b2")


def test_a_large_redis_add_renews_the_lock_between_batches(redis_url, monkeypatch):
    import numpy as np

    from pipeline_lib.dedup.index import RedisIndex

    monkeypatch.setattr(RedisIndex, "_BATCH", 10)
    index = open_index(index_config("day1", redis_url))
    renewals = []
    monkeypatch.setattr(index, "renew", lambda: renewals.append(1))
    try:
        n = 35
        index.add("crawl2model/day1", np.array([f"d{i}" for i in range(n)], dtype=object),
                  np.arange(n, dtype=np.uint64), None, None)
    finally:
        index.close()
    assert len(renewals) == 4  # after each of the 3 full batches, and before the last


@pytest.mark.parametrize("backend", ["directory", "redis"])
def test_a_redone_partition_replaces_its_entries_in_either_index(tmp_path, backend, request):
    # Redis kept the first attempt's entries (HSETNX, never removed): a later partition was dropped
    # against a document no output holds any more, where the directory index kept it.
    url = str(tmp_path / "index") if backend == "directory" else request.getfixturevalue("redis_url")
    _, kept, _ = run_partition(tmp_path, "day1", [("a1", A, 1), ("b1", B, 1)], url)
    assert kept == {"a1", "b1"}
    shutil.rmtree(tmp_path / "day1")
    _, kept, _ = run_partition(tmp_path, "day1", [("a1", A, 1)], url)  # redone without b1
    assert kept == {"a1"}
    _, kept, rejected = run_partition(tmp_path, "day2", [("a2", A, 2), ("b2", B, 2), ("c2", C, 2)], url)
    assert kept == {"b2", "c2"} and rejected["a2"]["dup_kept_id"] == "a1"


@pytest.mark.parametrize("backend", ["directory", "redis"])
def test_a_recrawled_page_is_matched_against_the_version_each_run_kept(tmp_path, backend, request):
    # Crawled ids come from the URL: a page recrawled with new content has its old id. Entries were
    # found by id alone, so a near copy of the new version was verified against the old one's
    # signature (and kept), and an exact copy of it was labelled a near duplicate.
    url = str(tmp_path / "index") if backend == "directory" else request.getfixturevalue("redis_url")
    assert run_partition(tmp_path, "day1", [("page-u", A, 1)], url)[1] == {"page-u"}
    assert run_partition(tmp_path, "day2", [("page-u", B, 2)], url)[1] == {"page-u"}
    _, kept, rejected = run_partition(tmp_path, "day3", [("page-v", lightly_edited(B, 1), 3)], url)
    assert kept == set() and (rejected["page-v"]["reject_reason"], rejected["page-v"]["dup_kept_id"]) == (
        "near_duplicate", "page-u")
    _, kept, rejected = run_partition(tmp_path, "day4", [("page-x", B, 4)], url)
    assert rejected["page-x"]["reject_reason"] == "exact_duplicate"


def test_a_redis_redo_removes_only_what_the_run_still_owns(redis_url):
    # A forget cut short left fields listed as A's after they were freed; B then took one, and A's
    # next redo deleted B's entry: later partitions kept duplicates of B's document.
    import numpy as np
    import redis

    index = open_index(index_config("day1", redis_url))
    client = redis.Redis.from_url(redis_url)
    try:
        exact_key = f"{index.prefix}:exact"
        index.add("r/A", np.array(["a1", "a2"], dtype=object), np.array([1, 2], dtype=np.uint64), None, None)
        client.hdel(exact_key, (1).to_bytes(8, "little"))  # freed, still listed as A's
        index.add("r/B", np.array(["b1"], dtype=object), np.array([1], dtype=np.uint64), None, None)
        index.add("r/A", np.array(["a2"], dtype=object), np.array([2], dtype=np.uint64), None, None)  # A redone
        owners = client.hmget(exact_key, [(1).to_bytes(8, "little"), (2).to_bytes(8, "little")])
        assert [o.decode().replace("\x1f", " ") for o in owners] == ["r/B b1", "r/A a2"]
        assert index.lookup_exact(np.array([1], dtype=np.uint64), "r/C")[0] == "r/B\x1fb1"
    finally:
        index.close()
        client.close()
