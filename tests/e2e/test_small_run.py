"""`crawl2model run` on configs/small.yaml, end to end, on the embedded Prefect."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline_lib.schema import STAGES
from tests.e2e.support import run_cli

SHARD_STAGES = STAGES[:-1]  # 00_crawl .. 07_tokens


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_every_stage_wrote_shards_with_manifests(small_run):
    run_dir = small_run["run_dir"]
    for stage in SHARD_STAGES:
        d = run_dir / stage
        manifests = sorted((d / "_manifests").glob("part-*.manifest.json"))
        assert manifests, f"{stage} has no shards"
        for m in manifests:
            data = json.loads(m.read_text())
            assert (d / data["files"]["kept"]["path"]).is_file()
            c = data["counters"]
            assert c["rows_in"] == c["kept"] + c["rejected"]
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "08_train").glob("*.pt")), "no checkpoint"
    assert (run_dir / "08_train" / "metrics.parquet").is_file()


def test_documents_flow_through_and_every_rejection_has_a_reason(small_run):
    run_dir = small_run["run_dir"]
    kept = pq.read_table(run_dir / "06_pii").to_pydict()
    assert kept["id"] and all(kept["text"])
    assert len(set(kept["id"])) == len(kept["id"])
    tokens = pq.read_table(run_dir / "07_tokens")
    assert tokens.num_rows == len(kept["id"])
    for stage in ("01_urlfilter", "03_langid", "04_quality", "05_dedup"):
        rej = run_dir / stage / "_rejected"
        assert rej.is_dir(), f"the sample site has pages {stage} must reject"
        reasons = pq.read_table(rej).column("reject_reason").to_pylist()
        assert reasons and all(reasons)
    # No page under robots.txt-disallowed /private/ was ever fetched.
    crawled = pq.read_table(run_dir / "00_crawl", columns=["url"]).column("url").to_pylist()
    assert crawled and not [u for u in crawled if "/private/" in u]


def test_cli_prints_funnel_and_where_outputs_are(small_run):
    out = small_run["proc"].stdout
    assert str(small_run["run_dir"]) in out and "04_quality" in out


def test_inspect_json(small_run):
    proc = run_cli(["inspect", str(small_run["run_dir"]), "--json"], small_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    stages = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert set(SHARD_STAGES) <= set(stages)
    for s in stages.values():
        assert s["rows_in"] == s["kept"] + s["rejected"]


def test_second_run_redoes_nothing_and_changes_nothing(small_run):
    run_dir = small_run["run_dir"]
    before = _snapshot(run_dir)
    proc = run_cli(["run", "--config", str(small_run["config"])], small_run["tmp"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _snapshot(run_dir) == before


def test_verify_passes_then_catches_a_corrupted_shard(small_run, tmp_path):
    run_dir = small_run["run_dir"]
    copy = tmp_path / "small" / "sample"
    shutil.copytree(run_dir, copy)
    ok = run_cli(["verify", str(copy)], small_run["tmp"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    victim = sorted((copy / "03_langid").glob("part-*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x55
    victim.write_bytes(bytes(data))
    bad = run_cli(["verify", str(copy)], small_run["tmp"])
    assert bad.returncode == 1
    assert str(victim) in bad.stdout and "checksum mismatch" in bad.stdout


def test_bad_config_fails_before_any_work(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"run:\n  data_root: {tmp_path}/runs\n  workers: -1\ncrawl:\n  max_pagez: 3\n")
    proc = run_cli(["run", "--config", str(cfg)], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr and "crawl.max_pagez" in proc.stderr and "run.workers" in proc.stderr
    assert not (tmp_path / "runs").exists()
    assert not os.path.exists(tmp_path / "prefect-home")
