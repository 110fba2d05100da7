"""The shared end-to-end run of configs/small.yaml."""

from __future__ import annotations

import pytest

from tests.e2e.support import run_cli, write_small_config


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """One full pipeline run of the small config, shared by the e2e tests (it takes a while)."""
    tmp = tmp_path_factory.mktemp("e2e")
    config = write_small_config(tmp)
    proc = run_cli(["run", "--config", str(config)], tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    run_dir = tmp / "runs" / "small" / "sample"
    return {"tmp": tmp, "config": config, "run_dir": run_dir, "proc": proc}
