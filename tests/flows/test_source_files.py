"""The crawl flow ingests WARC files side by side (one task per file on the worker pool) and writes
exactly what a one-after-another ingest writes: the same shard names, the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_lib import pipeline, shards
from pipeline_lib.config import parse_config
from pipeline_lib.crawl.ingest import FILE_SHARD_STRIDE
from pipeline_lib.pipeline import ConfigRef
from tests.e2e.support import REPO, cli_env

WARCS = ["resiliparse/warcfile.warc.gz", "warcio/example.warc.gz", "resiliparse/clueweb-quirk.warc.gz",
         "resiliparse/clipped.warc.gz"]


def _config(tmp_path: Path, warc_dir: Path, name: str) -> dict:
    return {"run": {"data_root": str(tmp_path / "runs"), "name": name, "partition": "p", "workers": 2},
            "source": {"kind": "warc", "warc_paths": [str(warc_dir / w) for w in WARCS], "records_per_shard": 7}}


def _crawl_flow(config: Path, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.flows.run_stages", str(config), "crawl"], cwd=REPO,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _checksums(run_dir: str) -> dict[str, tuple[str, dict]]:
    fs, d = shards.filesystem(run_dir), f"{run_dir}/00_crawl"
    return {n: (m["input_file"], {k: e["sha256"] for k, e in m["files"].items()})
            for n in shards.list_shards(fs, d) for m in [shards.load_manifest(fs, d, n)]}


def test_warc_files_ingest_in_parallel_tasks_as_they_would_one_by_one(tmp_path, shared_data):
    warc_dir = shared_data / "warc"
    if not warc_dir.is_dir():
        pytest.skip("../shared/data/warc is not present")
    config = tmp_path / "flow.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, warc_dir, "flow")))
    out = _crawl_flow(config, tmp_path)
    summary = out["results"]["crawl"]["warc"]
    assert summary["files"] == len(WARCS) and summary["files_skipped"] == 0
    assert summary["reasons"].get("warc_truncated", 0) >= 1  # the clipped file: counted, not a crash

    by_name = _checksums(out["run_dir"])
    # File i owns the shard numbers from i * FILE_SHARD_STRIDE: its names do not depend on the others.
    for name, (src, _) in by_name.items():
        index = int(name.split("-")[1])
        assert src == str(warc_dir / WARCS[index // FILE_SHARD_STRIDE])
    assert {int(n.split("-")[1]) // FILE_SHARD_STRIDE for n in by_name} == set(range(len(WARCS)))
    assert summary["shards"] == len(by_name) and summary["pages"] == sum(
        shards.load_manifest(shards.filesystem(out["run_dir"]), f"{out['run_dir']}/00_crawl", n)["counters"]["kept"]
        for n in by_name)

    # The same inputs ingested one after another in this process: identical shards, byte for byte.
    cfg = parse_config(_config(tmp_path, warc_dir, "serial"))
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    serial = pipeline.run_source(ref, run_dir)
    assert serial["warc"]["pages"] == summary["pages"] and serial["warc"]["rejected"] == summary["rejected"]
    assert _checksums(run_dir) == by_name

    # Run the flow again: every complete file is skipped; the clipped one (a file cut short, as a
    # partial download is) is read again, and gives the same shards, so nothing is rewritten.
    again = _crawl_flow(config, tmp_path)["results"]["crawl"]["warc"]
    assert summary["files_failed"] == again["files_failed"] == 1
    assert again["files_skipped"] == len(WARCS) - 1
    assert again["shards_written"] == 0 and again["pages"] == summary["pages"]


def test_a_run_dir_numbered_another_way_is_refused_not_duplicated(tmp_path, shared_data):
    warc_dir = shared_data / "warc"
    if not warc_dir.is_dir():
        pytest.skip("../shared/data/warc is not present")
    cfg = parse_config(_config(tmp_path, warc_dir, "old"))
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    pipeline.run_source(ref, run_dir)
    state = Path(run_dir) / "00_crawl" / "_ingest_state"
    # A finished file whose marker places it elsewhere (another source.kind, another numbering).
    marker = state / "warc-00001.json"
    data = json.loads(marker.read_text())
    data["first_shard"] = 3
    marker.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="would start it at 10000"):
        pipeline.run_source(ref, run_dir)
    # A folder left by crawl2model before per-file shard blocks: markers but no layout file, and a
    # file it had not finished. Reading that file again here would duplicate its pages.
    marker.unlink()
    (state / "layout.json").unlink()
    before = sorted(p.name for p in (Path(run_dir) / "00_crawl").glob("*.parquet"))
    with pytest.raises(ValueError, match="older crawl2model"):
        pipeline.run_source(ref, run_dir)
    assert sorted(p.name for p in (Path(run_dir) / "00_crawl").glob("*.parquet")) == before
