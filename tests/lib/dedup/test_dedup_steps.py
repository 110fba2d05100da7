"""The three dedup steps on small shards in a temp dir: signatures, clustering, filter."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.dedup import run_clustering, run_filter_shard, run_signatures_shard
from tests.lib.dedup.docs import article, docs_table, lightly_edited, write_input
from tests.lib.shard_support import read_stage

@pytest.fixture()
def run(tmp_path):
    """An input stage with two shards holding exact and near duplicates across shards."""
    a, b, c = article(1), article(2), article(3)
    shard0 = docs_table([("a-orig", a, 5), ("b-late", b, 9), ("c", c, 1), ("a-exact-early", a.upper(), 2)])
    shard1 = docs_table([("a-near", lightly_edited(a, 7), 3), ("b-early", lightly_edited(b, 8), 4),
                         ("unique", article(4), 1), ("empty1", "", 1), ("empty2", "  !! ", 2)])
    fs = shards.filesystem(str(tmp_path))
    base = str(tmp_path)
    dirs = {k: f"{base}/{k}" for k in ("in", "sig", "clusters", "out")}
    write_input(fs, dirs["in"], "part-00000", shard0)
    write_input(fs, dirs["in"], "part-00001", shard1)
    return fs, dirs


def run_all(cfg, fs, dirs):
    sig = [run_signatures_shard(cfg, fs, dirs["in"], dirs["sig"], n) for n in ("part-00000", "part-00001")]
    clu = run_clustering(cfg, fs, dirs["sig"], dirs["clusters"])
    out = [run_filter_shard(cfg, fs, dirs["in"], dirs["clusters"], dirs["out"], n) for n in ("part-00000", "part-00001")]
    return sig, clu, out


def test_drops_exact_and_near_duplicates_across_shards_keeping_the_earliest(run):
    fs, dirs = run
    cfg = parse_config({})
    sig, clu, out = run_all(cfg, fs, dirs)
    kept = read_stage(fs, dirs["out"], "kept")
    rejected = read_stage(fs, dirs["out"], "rejected")
    assert sorted(kept.column("id").to_pylist()) == ["a-exact-early", "b-early", "c", "empty1", "unique"]
    by_id = {r["id"]: r for r in rejected.to_pylist()}
    assert by_id["a-orig"]["reject_reason"] == "exact_duplicate"
    assert by_id["a-orig"]["dup_kept_id"] == "a-exact-early"
    assert by_id["a-near"]["reject_reason"] == "near_duplicate"
    assert by_id["a-near"]["dup_kept_id"] == "a-exact-early"
    assert by_id["a-near"]["dup_cluster"] == by_id["a-orig"]["dup_cluster"] == "a-exact-early"
    assert by_id["b-late"]["reject_reason"] == "near_duplicate" and by_id["b-late"]["dup_kept_id"] == "b-early"
    # Two texts that normalise to nothing are the same (empty) document.
    assert by_id["empty2"]["reject_reason"] == "exact_duplicate" and by_id["empty2"]["dup_kept_id"] == "empty1"
    # Columns the stage does not own travel through, on kept and rejected rows alike.
    assert {"url", "source", "extra_col", "fetched_at"} <= set(kept.column_names) & set(rejected.column_names)
    assert sum(s["rows_in"] for s in out) == 9 and sum(s["rejected"] for s in out) == 4
    assert clu["rows_in"] == 9 and clu["rejected"] == 4 and not clu["skipped"]


def test_keep_rule_is_configurable(run):
    fs, dirs = run
    cfg = parse_config({"dedup": {"keep": "latest"}})
    run_all(cfg, fs, dirs)
    kept = set(read_stage(fs, dirs["out"], "kept").column("id").to_pylist())
    assert {"a-orig", "b-late", "empty2"} <= kept and not {"a-near", "a-exact-early", "b-early"} & kept


def test_rerun_skips_every_step_and_changes_nothing(run):
    fs, dirs = run
    cfg = parse_config({})
    run_all(cfg, fs, dirs)
    before = {p: open(p, "rb").read() for p in fs.find(dirs["out"])}
    sig, clu, out = run_all(cfg, fs, dirs)
    assert all(s["skipped"] for s in sig + out) and clu["skipped"]
    assert {p: open(p, "rb").read() for p in fs.find(dirs["out"])} == before


def test_killed_run_resumes_from_completed_steps(run):
    fs, dirs = run
    cfg = parse_config({})
    first = run_signatures_shard(cfg, fs, dirs["in"], dirs["sig"], "part-00000")
    assert not first["skipped"]  # "killed" here: shard 1, clustering and filter never ran
    sig, clu, out = run_all(cfg, fs, dirs)
    assert [s["skipped"] for s in sig] == [True, False] and not clu["skipped"]
    assert sum(s["rejected"] for s in out) == 4


def test_config_change_redoes_the_steps(run):
    fs, dirs = run
    run_all(parse_config({}), fs, dirs)
    sig, clu, out = run_all(parse_config({"dedup": {"near": False}}), fs, dirs)
    assert not clu["skipped"] and not any(s["skipped"] for s in sig + out)
    rejected = read_stage(fs, dirs["out"], "rejected")
    assert set(pc.unique(rejected.column("reject_reason")).to_pylist()) == {"exact_duplicate"}
    assert sorted(rejected.column("id").to_pylist()) == ["a-orig", "empty2"]


def test_filter_refuses_to_run_before_clustering(run):
    fs, dirs = run
    cfg = parse_config({})
    run_signatures_shard(cfg, fs, dirs["in"], dirs["sig"], "part-00000")
    with pytest.raises(shards.ShardError, match="clustering"):
        run_filter_shard(cfg, fs, dirs["in"], dirs["clusters"], dirs["out"], "part-00000")


def test_repeated_ids_are_decided_per_row(tmp_path):
    """The same id twice (one URL fetched twice): one row kept, the other dropped, none lost."""
    fs = shards.filesystem(str(tmp_path))
    dirs = {k: f"{tmp_path}/{k}" for k in ("in", "sig", "clusters", "out")}
    text = article(5)
    write_input(fs, dirs["in"], "part-00000", docs_table([("same", text, 2), ("other", article(6), 1), ("same", text, 1)]))
    cfg = parse_config({})
    run_signatures_shard(cfg, fs, dirs["in"], dirs["sig"], "part-00000")
    run_clustering(cfg, fs, dirs["sig"], dirs["clusters"])
    summary = run_filter_shard(cfg, fs, dirs["in"], dirs["clusters"], dirs["out"], "part-00000")
    kept = shards.read_verified(fs, dirs["out"], "part-00000")
    rejected = shards.read_verified(fs, dirs["out"], "part-00000", which="rejected")
    assert summary["kept"] == 2 and summary["rejected"] == 1
    assert sorted(kept.column("extra_col").to_pylist()) == [1, 2]  # the earlier "same" (row 2) survives
    assert rejected.column("extra_col").to_pylist() == [0]


def test_empty_run_and_empty_shards(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    dirs = {k: f"{tmp_path}/{k}" for k in ("in", "sig", "clusters", "out")}
    cfg = parse_config({})
    assert run_clustering(cfg, fs, dirs["sig"], dirs["clusters"])["rows_in"] == 0
    write_input(fs, dirs["in"], "part-00000", docs_table([]))
    run_signatures_shard(cfg, fs, dirs["in"], dirs["sig"], "part-00000")
    assert run_clustering(cfg, fs, dirs["sig"], dirs["clusters"])["rows_in"] == 0
    assert run_filter_shard(cfg, fs, dirs["in"], dirs["clusters"], dirs["out"], "part-00000")["kept"] == 0


def test_filter_refuses_an_input_changed_after_clustering(run):
    fs, dirs = run
    cfg = parse_config({})
    run_all(cfg, fs, dirs)
    write_input(fs, dirs["in"], "part-00001", docs_table([("new", article(99), 1)]))
    with pytest.raises(shards.ShardError, match="changed after"):
        run_filter_shard(cfg, fs, dirs["in"], dirs["clusters"], dirs["out"], "part-00001")
    sig, clu, out = run_all(cfg, fs, dirs)  # the flow order redoes what the change invalidated
    assert not clu["skipped"] and sig[1]["skipped"] is False and out[1]["rows_in"] == 1
