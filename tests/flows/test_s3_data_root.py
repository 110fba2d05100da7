"""The data root on s3:// through fsspec/s3fs, against a real S3-compatible server (moto's server mode).

The endpoint and credentials travel in ``run.storage_options`` only (no AWS_* variables in the
environment), so every read and write that forgets the options fails here instead of in production.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from pipeline_lib import shards
from pipeline_lib.schema import STAGES
from tests.e2e.support import REPO, cli_env, free_port, write_small_config

s3fs = pytest.importorskip("s3fs")
BUCKET = "crawl2model-test"


@pytest.fixture
def s3_endpoint(tmp_path):
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not os.path.exists(exe):
        pytest.skip("moto[server] is not installed")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url, timeout=2)
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "moto.log").read_text()[-2000:])
                time.sleep(0.3)
        requests.put(f"{url}/{BUCKET}", timeout=10).raise_for_status()  # CreateBucket, us-east-1
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def _storage_options(endpoint: str) -> dict:
    # Listings are not cached: manifests are written by other processes, and a cached listing of a
    # stage folder would hide them (a consumer would see no shards).
    return {"key": "testing", "secret": "testing", "use_listings_cache": False,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


def _run_stages(config: Path, which: str, tmp: Path) -> str:
    env = {k: v for k, v in cli_env(tmp).items() if not k.startswith("AWS_")}
    proc = subprocess.run([sys.executable, "-m", "tests.flows.run_stages", str(config), which], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    return proc.stdout.strip().splitlines()[-1]


def _objects(fs) -> dict[str, tuple[str, str]]:
    """Every object of the data root with its ETag and modification time (a rewrite changes the time)."""
    return {k: (v["ETag"], str(v["LastModified"])) for k, v in fs.find(f"{BUCKET}/runs", detail=True).items()}


@pytest.mark.slow
def test_pipeline_stages_read_and_write_an_s3_data_root(tmp_path, s3_endpoint):
    options = _storage_options(s3_endpoint)
    config = write_small_config(tmp_path, task_runner="process", workers=2)
    data = yaml.safe_load(config.read_text())
    data["run"].update(data_root=f"s3://{BUCKET}/runs", storage_options=options)
    config.write_text(yaml.safe_dump(data))

    _run_stages(config, "crawl", tmp_path)
    _run_stages(config, "cpu", tmp_path)

    fs = s3fs.S3FileSystem(**options)
    run_dir = f"s3://{BUCKET}/runs/small/sample"
    assert fs.exists(f"{BUCKET}/runs/small/sample/config.yaml")
    for stage in STAGES[:8]:
        stage_dir = shards.join(run_dir, stage)
        names = shards.list_shards(fs, stage_dir)
        assert names, f"{stage}: no shards on S3"
        assert shards.verify_stage_dir(fs, stage_dir) == [], stage
        keys = fs.find(f"{BUCKET}/runs/small/sample/{stage}")
        assert not [k for k in keys if "/.tmp-" in k], "object stores get direct PUTs, never temp names"
    kept = shards.read_verified(fs, shards.join(run_dir, "06_pii"), "part-00000")
    assert kept.num_rows and "text" in kept.column_names

    before = _objects(fs)
    _run_stages(config, "cpu", tmp_path)
    after = _objects(fs)
    assert after == before, "a rerun on S3 finds every manifest and rewrites nothing"

    # Training alone and sampling, from the run dir on S3: the CLI reads the run's config.yaml there.
    env = {k: v for k, v in cli_env(tmp_path).items() if not k.startswith("AWS_")}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "crawl2model.cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    opts = json.dumps(options)
    trained = cli("train", "--run-dir", run_dir, "--max-steps", "2", "--storage-options", opts)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads(trained.stdout.strip().splitlines()[-1])["steps"] == 2
    assert fs.exists(f"{BUCKET}/runs/small/sample/08_train/ckpt.pt")
    sampled = cli("sample", run_dir, "The garden", "--max-new-tokens", "5", "--seed", "1", "--storage-options", opts)
    assert sampled.returncode == 0 and sampled.stdout.startswith("The garden"), sampled.stderr[-3000:]
    blind = cli("sample", f"{run_dir}/08_train/ckpt.pt", "The garden")  # no credentials: says so, in one line
    assert blind.returncode == 2 and "Traceback" not in blind.stderr, blind.stderr[-3000:]
    assert "--storage-options" in blind.stderr
