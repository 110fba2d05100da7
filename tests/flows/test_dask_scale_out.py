"""Scale-out: the CPU stages on a real dask.distributed LocalCluster (two worker processes, through
prefect-dask) write exactly the shards the default runner (threads + a spawned process pool) writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_lib import shards
from pipeline_lib.schema import STAGES
from tests.e2e.support import REPO, cli_env, write_small_config

pytest.importorskip("prefect_dask")
pytest.importorskip("distributed")

CPU_STAGE_DIRS = STAGES[1:8]  # 01_urlfilter .. 07_tokens


def run_stages(config: Path, which: str, tmp: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.flows.run_stages", str(config), which], cwd=REPO,
                          env=cli_env(tmp), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def shard_checksums(run_dir: str) -> dict[str, dict[str, dict[str, str]]]:
    """stage -> shard -> {kept|rejected|...: sha256}, read from the manifests."""
    fs = shards.filesystem(run_dir)
    out = {}
    for stage in CPU_STAGE_DIRS:
        d = shards.join(run_dir, stage)
        out[stage] = {n: {k: e["sha256"] for k, e in shards.load_manifest(fs, d, n)["files"].items()}
                      for n in shards.list_shards(fs, d)}
    return out


def _config(tmp: Path, data_root: Path, **run) -> Path:
    path = write_small_config(tmp)
    data = yaml.safe_load(path.read_text())
    data["run"].update(data_root=str(data_root), workers=2, **run)
    data["train"]["enabled"] = False
    out = tmp / f"{data_root.name}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


@pytest.mark.slow
def test_cpu_stages_on_a_dask_cluster_match_the_default_runner(tmp_path):
    default_cfg = _config(tmp_path, tmp_path / "default", task_runner="process")
    dask_cfg = _config(tmp_path, tmp_path / "dask", task_runner="dask")

    crawled = run_stages(default_cfg, "crawl", tmp_path)
    default_run = Path(crawled["run_dir"])
    dask_run = tmp_path / "dask" / default_run.relative_to(tmp_path / "default")
    # Both runners start from the same pages (a crawl stamps fetch times, so crawl once and copy).
    shutil.copytree(default_run / "00_crawl", dask_run / "00_crawl")

    default = run_stages(default_cfg, "cpu", tmp_path)
    on_dask = run_stages(dask_cfg, "cpu", tmp_path)

    assert "dask" not in default["results"]
    per_worker = on_dask["results"]["dask"]["tasks_per_worker"]
    assert len(per_worker) == 2, f"both LocalCluster workers should have run shard tasks: {per_worker}"
    assert sum(per_worker.values()) >= 7 * 2, per_worker  # every CPU stage maps over several shards

    expected = shard_checksums(str(default_run))
    assert all(expected[s] for s in CPU_STAGE_DIRS), expected
    assert shard_checksums(str(dask_run)) == expected
    for stage in ("urlfilter", "quality", "tokens"):
        assert on_dask["results"][stage]["kept"] == default["results"][stage]["kept"]
