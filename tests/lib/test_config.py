from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.config import ConfigError, PipelineConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["small.yaml", "pipeline.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, PipelineConfig)


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("run:\n  partition: x\nextract:\n  favour_precision: true\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "extract.favour_precision" in msg and "unknown key" in msg


def test_bounds_are_checked(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("run:\n  workers: 0\n")
    with pytest.raises(ConfigError, match=r"run\.workers"):
        load_config(p)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_langid_threshold_bounds():
    with pytest.raises(ConfigError, match="langid.languages"):
        parse_config({"langid": {"languages": {"en": 1.5}}})


def test_partition_must_be_a_safe_path_component():
    with pytest.raises(ConfigError, match="run.partition"):
        parse_config({"run": {"partition": "../../etc"}})


def test_run_dir_derives_from_partition_and_hash_is_stable(tmp_path):
    a = parse_config({"run": {"data_root": str(tmp_path), "name": "n", "partition": "2026-01-02"}})
    b = parse_config({"run": {"data_root": str(tmp_path), "name": "n", "partition": "2026-01-02"}})
    assert a.run_dir == f"{tmp_path}/n/2026-01-02"
    assert a.section_hash("extract") == b.section_hash("extract")
    c = parse_config({"extract": {"favor_precision": False}})
    assert c.section_hash("extract") != a.section_hash("extract")


def test_overrides_merge(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  name: x\n  partition: a\n")
    cfg = load_config(p, {"run": {"partition": "b"}})
    assert (cfg.run.name, cfg.run.partition) == ("x", "b")


def test_missing_input_file_fails_at_load_naming_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("urlfilter:\n  blocklist_files: [nope.txt]\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "urlfilter.blocklist_files[0]" in str(e.value) and str(tmp_path / "nope.txt") in str(e.value)


@pytest.mark.parametrize("yaml_text, key", [
    ("urlfilter:\n  ut1_dir: no-ut1\n", "urlfilter.ut1_dir"),
    ("urlfilter:\n  soft_words_file: soft.txt\n", "urlfilter.soft_words_file"),
    ("tokenize:\n  source: dir\n  tokenizer_dir: no-tok\n", "tokenize.tokenizer_dir"),
])
def test_every_named_input_is_checked_at_load(tmp_path, yaml_text, key):
    p = tmp_path / "c.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(p)


def test_recorded_config_has_absolute_paths_and_loads_from_the_run_dir(tmp_path, monkeypatch):
    from pipeline_lib.config import dump_config
    from pipeline_lib.pipeline import prepare_run

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "block.txt").write_text("bad.example\n")
    (conf / "c.yaml").write_text("run:\n  name: n\n  partition: p\n  data_root: runs\n"
                                 "urlfilter:\n  blocklist_files: [block.txt]\n")
    monkeypatch.chdir(tmp_path)  # data_root is relative to the working directory
    cfg = load_config(conf / "c.yaml")
    run_dir = prepare_run(cfg)
    assert run_dir == str(tmp_path / "runs" / "n" / "p")
    expected = dump_config(cfg.resolved())
    # From elsewhere, the recorded config loads (its relative blocklist would not) and says the same things.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recorded = load_config(Path(run_dir) / "config.yaml")
    assert recorded.urlfilter.blocklist_files == [str(conf / "block.txt")]
    assert recorded.run_dir == run_dir
    assert dump_config(recorded) == expected


def test_pipeline_yaml_is_the_generated_reference_with_every_knob():
    from pipeline_lib.config_doc import render

    text = (REPO / "configs" / "pipeline.yaml").read_text()
    assert text == render(), "regenerate: python -m pipeline_lib.config_doc > configs/pipeline.yaml"
    assert load_config(REPO / "configs" / "pipeline.yaml").model_dump() == PipelineConfig().model_dump()
    for line in text.splitlines():  # every scalar knob carries its own one-line comment
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "-")) and not stripped.endswith(":") and ":" in stripped:
            assert " # " in line, f"knob without a comment: {line}"


def test_a_warc_listing_with_a_segment_range_is_checked_without_its_range(tmp_path):
    (tmp_path / "warc.paths").write_text("crawl-data/x.warc.gz\n")
    p = tmp_path / "c.yaml"
    p.write_text("source:\n  kind: warc\n  warc_paths: ['warc.paths#0:1']\n")
    assert load_config(p).source.warc_paths == ["warc.paths#0:1"]
    p.write_text("source:\n  kind: warc\n  warc_paths: ['nope.paths#0:1']\n")
    with pytest.raises(ConfigError, match=r"source\.warc_paths\[0\]"):
        load_config(p)


def test_a_root_data_root_stays_the_root_when_recorded():
    cfg = parse_config({"run": {"data_root": "/", "name": "n", "partition": "p"}})
    assert cfg.resolved().run.data_root == "/" and cfg.resolved().run_dir == cfg.run_dir


@pytest.mark.parametrize("train,message", [
    ({"preset": "gpt2-125m"}, "unknown model preset 'gpt2-125m'"),
    ({"device": "gpu"}, "'gpu' is no device"),
    ({"device": "cuda:x"}, "'cuda:x' is no device"),
])
def test_train_preset_and_device_are_checked_with_the_config(train, message):
    # A typo failed only when training began, after every stage of the pipeline had run.
    with pytest.raises(ConfigError, match=message):
        parse_config({"train": train})
    for ok in ({"preset": "gpt2-124m"}, {"device": "cuda:1"}, {"device": "mps"}, {"device": "auto"}):
        parse_config({"train": ok})


def test_the_presets_the_config_accepts_are_the_models_presets():
    from pipeline_lib.config import MODEL_PRESETS
    from pipeline_lib.model.gpt import PRESETS

    assert tuple(PRESETS) == MODEL_PRESETS


def load_config_text(tmp_path: Path, data: dict, overrides: dict) -> PipelineConfig:
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path, overrides)


def test_source_paths_take_the_partition(tmp_path):
    # One config backfills many partitions, each from its own files; before, every partition of a
    # backfill ingested the same files.
    from pipeline_lib import pipeline

    for day in ("2026-11-27", "2026-11-28"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "docs.jsonl").write_text('{"text": "x"}\n')
    data = {"run": {"data_root": str(tmp_path / "runs")},
            "source": {"kind": "docs", "docs_paths": ["{partition}/docs.jsonl", "s3://corpus/{partition}/docs.jsonl.gz"]}}
    for day in ("2026-11-27", "2026-11-28"):
        cfg = load_config_text(tmp_path, data, {"run": {"partition": day}})
        assert cfg.source_paths("docs_paths") == [str(tmp_path / day / "docs.jsonl"), f"s3://corpus/{day}/docs.jsonl.gz"]
        assert cfg.resolved().source.docs_paths == cfg.source_paths("docs_paths")  # the run dir records the files
        jobs = pipeline._source_job_list(cfg, pipeline.source_dir(cfg, cfg.run_dir))
        assert [j.src for j in jobs] == cfg.source_paths("docs_paths")
    with pytest.raises(ConfigError, match=r"source.docs_paths\[0\]: .*2026-11-29/docs.jsonl does not exist"):
        load_config_text(tmp_path, data, {"run": {"partition": "2026-11-29"}})
