"""Partition keys of a backfill, and "is this partition complete?" read from manifests on disk."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from crawl2model.commands.ops import format_table, plan_backfill
from pipeline_lib import partitions, pipeline, shards
from pipeline_lib.config import parse_config


def test_date_range_includes_both_ends_and_crosses_months():
    assert partitions.date_range("2026-02-27", "2026-03-02") == ["2026-02-27", "2026-02-28", "2026-03-01",
                                                                  "2026-03-02"]
    assert partitions.date_range("2026-11-05", "2026-11-05") == ["2026-11-05"]


@pytest.mark.parametrize("start,end,message", [
    ("2026-11-05", "2026-11-04", "before"),
    ("2026-13-01", "2026-12-01", "not a date"),
    ("yesterday", "2026-12-01", "not a date"),
    ("2000-01-01", "2026-01-01", "at most"),
])
def test_bad_ranges_say_why(start, end, message):
    with pytest.raises(partitions.PartitionError, match=message):
        partitions.date_range(start, end)


def test_partition_list_is_cleaned_and_validated():
    assert partitions.parse_list(" a, crawl-42,,a ,2026-11-01") == ["a", "crawl-42", "2026-11-01"]
    with pytest.raises(partitions.PartitionError, match="invalid"):
        partitions.parse_list("ok,../etc")
    with pytest.raises(partitions.PartitionError, match="no partition"):
        partitions.parse_list(" , ")


def test_select_wants_exactly_one_way_of_naming_partitions():
    assert partitions.select(listed="x,y") == ["x", "y"]
    assert partitions.select("2026-01-01", "2026-01-02") == ["2026-01-01", "2026-01-02"]
    with pytest.raises(partitions.PartitionError, match="not both"):
        partitions.select("2026-01-01", "2026-01-02", "x")
    with pytest.raises(partitions.PartitionError, match="--from and --to"):
        partitions.select("2026-01-01", None)


def _config(tmp_path, train: bool = True):
    return parse_config({"run": {"name": "fam", "data_root": str(tmp_path / "runs")},
                         "train": {"enabled": train}}, base_dir=str(tmp_path))


def _write_shard(fs, stage_dir: str, name: str) -> None:
    table = pa.table({"id": ["a"], "text": ["t"]})
    entry = shards.write_table_file(fs, stage_dir, f"{name}.parquet", table)
    shards.write_manifest(fs, stage_dir, name, {"stage": stage_dir.rsplit("/", 1)[1], "files": {"kept": entry.to_dict()},
                                                "counters": {}})


def _fill(cfg, partition: str, token_shards: int, trained: bool, names=None, source: bool = True) -> str:
    """Shards ``names`` (default two) in the source folder (unless ``source`` is False) and in every
    stage after it, the tokens stage holding only the first ``token_shards`` of them."""
    pcfg = partitions.for_partition(cfg, partition)
    run_dir = pcfg.run_dir
    fs = pipeline.fs_for(pcfg, run_dir)
    names = names or [shards.shard_name(i) for i in range(2)]
    src = pipeline.source_dir(pcfg, run_dir)
    for key in pipeline.ORDER[:-1]:
        d = src if key == "crawl" else pipeline.stage_dir(run_dir, key)
        if key != "crawl" and (d == src or not pipeline.enabled(pcfg, key)):
            continue
        if d == src and not source:
            continue
        for name in names[:token_shards] if key == "tokens" else names:
            _write_shard(fs, d, name)
    if trained:
        shards.write_bytes_atomic(fs, shards.join(pipeline.stage_dir(run_dir, "train"), "done.json"),
                                  json.dumps({"fingerprint": "x"}).encode())
    return run_dir


def test_complete_only_with_every_token_shard_and_training_done(tmp_path):
    cfg = _config(tmp_path)
    assert partitions.check(cfg, "2026-11-01").missing == ("00_crawl: no shards", "08_train: no done.json")
    run_dir = _fill(cfg, "2026-11-01", token_shards=1, trained=False)
    assert run_dir == str(tmp_path / "runs" / "fam" / "2026-11-01")
    state = partitions.check(cfg, "2026-11-01")
    assert not state.complete and state.missing == ("07_tokens: 1 of 2 shards", "08_train: no done.json")
    _fill(cfg, "2026-11-01", token_shards=2, trained=False)
    assert partitions.check(cfg, "2026-11-01").missing == ("08_train: no done.json",)
    _fill(cfg, "2026-11-01", token_shards=2, trained=True)
    assert partitions.check(cfg, "2026-11-01").complete
    assert not partitions.check(cfg, "2026-11-02").complete, "another partition is another run dir"
    assert partitions.check(_config(tmp_path, train=False), "2026-11-01").complete


def test_a_shard_dropped_upstream_makes_the_partition_incomplete(tmp_path):
    """Two runs of one partition at once once left 04_quality a shard short, and every later stage
    in step with it: the tokens stage alone looked complete."""
    cfg = _config(tmp_path, train=False)
    run_dir = _fill(cfg, "p1", token_shards=2, trained=False)
    assert partitions.check(cfg, "p1").complete
    fs = shards.filesystem(run_dir)
    for stage in ("04_quality", "05_dedup", "06_pii", "07_tokens"):
        shards.remove_shard(fs, f"{run_dir}/{stage}", "part-00001")
    assert partitions.check(cfg, "p1").missing == ("04_quality: 1 of 2 shards",)
    _fill(cfg, "p1", token_shards=2, trained=False)
    shards.remove_if_exists(fs, shards.manifest_path(f"{run_dir}/03_langid", "part-00000"))  # being rewritten
    assert partitions.check(cfg, "p1").missing == ("03_langid: 1 of 2 shards",)


def test_a_partition_without_training_is_complete_when_training_is_off(tmp_path):
    cfg = _config(tmp_path, train=False)
    _fill(cfg, "p1", token_shards=2, trained=False)
    assert partitions.check(cfg, "p1").complete


def test_a_partition_with_a_source_file_not_read_to_its_end_is_incomplete(tmp_path):
    from pipeline_lib.crawl import ingest_docs

    good, missing = tmp_path / "a.jsonl", tmp_path / "later.jsonl"
    good.write_text('{"text": "one document", "url": "https://a.example/1"}\n')
    cfg = parse_config({"run": {"name": "fam", "data_root": str(tmp_path / "runs")}, "train": {"enabled": False},
                        "source": {"kind": "docs", "docs_paths": [str(good)]}}, base_dir=str(tmp_path))
    pcfg = partitions.for_partition(cfg, "p1")
    source = pipeline.source_dir(pcfg, pcfg.run_dir)
    fs = shards.filesystem(source)
    ingest_docs([str(good), str(missing)], fs, source)  # the second file is not there yet: docs_unreadable
    names = shards.list_shards(fs, source)
    _fill(cfg, "p1", token_shards=len(names), trained=False, names=names, source=False)
    state = partitions.check(cfg, "p1")
    assert not state.complete and state.missing == (
        f"02_extract: 1 input files not read to the end (failed or interrupted), e.g. {missing}",)
    missing.write_text('{"text": "another document", "url": "https://a.example/2"}\n')
    ingest_docs([str(good), str(missing)], fs, source)
    assert partitions.check(cfg, "p1").complete


def test_backfill_plan_skips_complete_partitions_unless_forced(tmp_path):
    cfg = _config(tmp_path)
    _fill(cfg, "2026-11-01", token_shards=2, trained=True)
    _fill(cfg, "2026-11-02", token_shards=1, trained=False)
    rows = plan_backfill(cfg, ["2026-11-01", "2026-11-02", "2026-11-03"], force=False)
    assert [r["state"] for r in rows] == ["SKIPPED", "PENDING", "PENDING"]
    assert "1 of 2 shards" in rows[1]["note"] and "00_crawl: no shards" in rows[2]["note"]
    forced = plan_backfill(cfg, ["2026-11-01", "2026-11-02"], force=True)
    assert [r["state"] for r in forced] == ["PENDING", "PENDING"]
    assert forced[0]["note"] == "complete; resubmitted (--force): its finished shards are skipped" and forced[0]["forced"] and not forced[1]["forced"]
    table = format_table(rows).splitlines()
    assert table[0].split() == ["partition", "flow_run", "state", "note"]
    assert table[1].startswith("2026-11-01") and "SKIPPED" in table[1]


def test_backfill_command_rejects_a_bad_range_before_calling_prefect(capsys):
    from crawl2model.cli import main

    assert main(["backfill", "--from", "2026-11-05", "--to", "2026-11-01"]) == 2
    assert "before --from" in capsys.readouterr().err
    assert main(["backfill", "--partitions", "a,b", "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err


def test_backfill_checks_completeness_where_the_deployment_runs_will_write():
    from crawl2model.commands.ops import backfill_target

    # The deployment's data_root parameter wins over the workers' variable (as in the flow), and
    # --data-root over both: before, a deployment's data_root was ignored and partitions complete
    # under the config's root were skipped though the runs write elsewhere.
    deployed = {"config_path": "configs/small.yaml", "data_root": "s3://prod/runs"}
    assert backfill_target("pipeline/daily", deployed, None, None, "/env/root") == ("configs/small.yaml", "s3://prod/runs")
    assert backfill_target("pipeline/daily", deployed, "mine.yaml", "/cli/root", "/env/root") == ("mine.yaml", "/cli/root")
    assert backfill_target("pipeline/daily", {"config_path": "c.yaml"}, None, None, "/env/root") == ("c.yaml", "/env/root")
    assert backfill_target("pipeline/daily", {"config_path": "c.yaml"}, None, None, None) == ("c.yaml", None)
    with pytest.raises(ValueError, match="no config_path"):
        backfill_target("pipeline/daily", {}, None, None, None)
    with pytest.raises(ValueError, match="sets run_dir"):
        backfill_target("pipeline/daily", {"config_path": "c.yaml", "run_dir": "/one/dir/p"}, None, None, None)


def test_backfill_without_a_server_says_what_it_needs_in_one_line(monkeypatch, capsys):
    from crawl2model.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # Before: a temporary server started, had no deployments, and a 30-line traceback followed.
    assert main(["backfill", "--partitions", "2026-11-01"]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and "Traceback" not in err


def test_a_stage_made_from_an_earlier_version_of_its_input_makes_the_partition_incomplete(tmp_path):
    """Every shard is there, but one source shard was rewritten (a fixed input file read again)
    after the stages ran: the run is not finished until they are redone from it."""
    from pipeline_lib.stage import input_entries

    cfg = _config(tmp_path, train=False)
    run_dir = _fill(cfg, "p1", token_shards=2, trained=False)
    pcfg = partitions.for_partition(cfg, "p1")
    fs = shards.filesystem(run_dir)

    def record_inputs():  # as stage.write_result does: each output names its input's checksum
        for key in pipeline.ORDER[1:-1]:
            out = pipeline.stage_dir(run_dir, key)
            if not pipeline.enabled(pcfg, key) or out == pipeline.source_dir(pcfg, run_dir):
                continue
            in_dir = pipeline.input_dir(pcfg, run_dir, key)
            for name in shards.list_shards(fs, out):
                manifest = shards.load_manifest(fs, out, name)
                manifest["inputs"] = input_entries(fs, in_dir, name)
                shards.write_manifest(fs, out, name, manifest)

    record_inputs()
    assert partitions.check(cfg, "p1").complete
    source = pipeline.source_dir(pcfg, run_dir)
    entry = shards.write_table_file(fs, source, "part-00001.parquet", pa.table({"id": ["b"], "text": ["new"]}))
    shards.write_manifest(fs, source, "part-00001", {"stage": "00_crawl", "files": {"kept": entry.to_dict()},
                                                     "counters": {}})
    first = pipeline.stage_dir(run_dir, "urlfilter")
    assert partitions.check(cfg, "p1").missing == (
        f"{first.rsplit('/', 1)[1]}: 1 of 2 shards made from an earlier version of their input (a run redoes them)",)
    record_inputs()  # the stages redone
    assert partitions.check(cfg, "p1").complete
