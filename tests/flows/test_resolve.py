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


def test_a_short_or_relative_run_dir_is_used_as_given_never_swapped_for_the_config_one(config, tmp_path, monkeypatch):
    from pipeline_lib.config import ConfigError, load_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    cfg = load_config(str(config))
    # Before, any run dir of fewer than three parts was ignored: the run wrote into the config's partition.
    assert cfg.with_run_dir("try1").run_dir == f"{tmp_path}/try1"
    assert cfg.with_run_dir("scratch/try1/").run_dir == f"{tmp_path}/scratch/try1"
    top = cfg.with_run_dir("/tmp/try1")
    assert (top.run_dir, top.run.data_root, top.run.name, top.run.partition) == ("/tmp/try1", "/", "tmp", "try1")
    assert cfg.with_run_dir("s3://bucket/runs/r/p").run.data_root == "s3://bucket/runs"
    with pytest.raises(ConfigError, match="not <data_root>/<name>/<partition>"):
        cfg.with_run_dir("s3://bucket/p")  # would have been an s3:/ data root
    with pytest.raises(ConfigError, match="1-128 chars"):
        cfg.with_run_dir(f"{tmp_path}/x/bad name")
    _, got = _resolve(config, run_dir="try2")
    assert got == f"{tmp_path}/try2" and not (tmp_path / "from-config").exists()
