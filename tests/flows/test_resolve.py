"""Where a flow run writes: resolve()'s precedence of run_dir, data_root, $CRAWL2MODEL_DATA_ROOT and the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.common import DATA_ROOT_ENV, resolve


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": {"name": "r", "partition": "p", "data_root": str(tmp_path / "from-config")}}))
    return path


def _resolve(config: Path, **kw) -> tuple[str, str]:
    cfg, ref, run_dir = resolve(str(config), **kw)
    assert ref.load().run.data_root == cfg.run.data_root  # the tasks see the same run as the flow
    assert (Path(run_dir) / "config.yaml").is_file()  # prepare_run made the dir it returned
    return cfg.run.data_root, run_dir


def test_the_config_data_root_when_nothing_overrides_it(config, tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert _resolve(config) == (str(tmp_path / "from-config"), f"{tmp_path}/from-config/r/p")


def test_the_worker_environment_overrides_the_config(config, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from-env"))
    assert _resolve(config) == (str(tmp_path / "from-env"), f"{tmp_path}/from-env/r/p")
    assert not (tmp_path / "from-config").exists()


def test_a_data_root_parameter_overrides_the_environment(config, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from-env"))
    got = _resolve(config, data_root=str(tmp_path / "from-param"), partition="2026-01-02")
    assert got == (str(tmp_path / "from-param"), f"{tmp_path}/from-param/r/2026-01-02")
    assert not (tmp_path / "from-env").exists() and not (tmp_path / "from-config").exists()


def test_an_explicit_run_dir_wins_over_everything(config, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "from-env"))
    run_dir = f"{tmp_path}/explicit/other-name/other-part"
    cfg, _, got = resolve(str(config), partition="2026-01-02", data_root=str(tmp_path / "from-param"), run_dir=run_dir)
    assert got == run_dir and (Path(run_dir) / "config.yaml").is_file()
    assert (cfg.run.data_root, cfg.run.name, cfg.run.partition) == (f"{tmp_path}/explicit", "other-name", "other-part")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("from-")]


def test_a_step_that_reads_only_the_run_dir_skips_the_input_file_check(tmp_path, monkeypatch):
    """Training on a GPU machine: the crawl's blocklist or WARC files are not there, and need not be."""
    from pipeline_lib.config import ConfigError

    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": {"name": "r", "partition": "p", "data_root": str(tmp_path / "runs")},
                                    "source": {"kind": "warc", "warc_paths": ["only-on-the-cpu-box.warc.gz"]}}))
    with pytest.raises(ConfigError, match="only-on-the-cpu-box"):
        resolve(str(path))
    cfg, _, run_dir = resolve(str(path), check_files=False)
    assert run_dir == f"{tmp_path}/runs/r/p" and cfg.source.warc_paths == ["only-on-the-cpu-box.warc.gz"]
