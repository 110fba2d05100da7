"""The DAG plan without Prefect: which folder each stage reads, and a run from cleaned documents."""

from __future__ import annotations

import glob
import json

import pyarrow.parquet as pq
import pytest

from pipeline_lib import pipeline, report, shards
from pipeline_lib.config import parse_config
from pipeline_lib.pipeline import ConfigRef
from tests.e2e.support import free_port

ARTICLE = (
    "The old mill by the river was built more than two hundred years ago by a family of millers. "
    "It ground wheat and oats for the farms around the valley, and its wheel turned every day of the "
    "year except when the river froze. Today the building is a small museum where visitors can see "
    "the stones, the gears and the wooden chutes that carried the flour down to the waiting carts.\n"
    "In spring the school brings children to watch the volunteers open the sluice gate. The water "
    "rushes under the floor, the shafts begin to creak, and after a minute the upper stone starts "
    "to turn. Most of the visitors stay for the baking demonstration that follows in the yard.\n"
    "The museum is run by a trust that depends on donations and on a yearly fair in September. "
    "Local bands play on the green, farmers sell cheese and apples, and the miller's cottage opens "
    "its attic, where the family kept their ledgers for more than a century."
)


OTHER_1 = (
    "Cycling to work through the winter takes some preparation, but it is easier than most people expect. "
    "Good lights matter more than anything else, because the evenings are dark by five o'clock. "
    "Mudguards keep the spray off your trousers, and a pair of thin gloves under thicker ones works well. "
    "Ben keeps a spare tube and a small pump in his bag, and he can fix a puncture in ten minutes.\n"
    "The hardest part is the first week. After that the routine settles, and the ride becomes the calmest "
    "part of the day. Write to ben@example.org if you want the route he takes along the canal."
)
OTHER_2 = (
    "Looking at the night sky needs nothing more than patience and a dark place away from street lights. "
    "Give your eyes twenty minutes to adjust, and avoid looking at your phone while you wait. "
    "The brightest points that do not twinkle are usually planets, and a pair of binoculars will show "
    "the moons of Jupiter as tiny dots in a line. A simple chart helps you find the constellations.\n"
    "Autumn evenings are a good season to start, since the nights are long but not yet bitterly cold. "
    "Cleo runs a small club that meets on the hill behind the church on the first Friday of each month."
)


def _read(stage_dir: str):
    return pq.read_table(sorted(glob.glob(f"{stage_dir}/*.parquet")))


def _through_dedup(ref: ConfigRef, run_dir: str) -> dict[str, list[str]]:
    """langid, quality and dedup as the flows run them (begin_stage first); the shards each removed."""
    removed = {}
    for key in ("langid", "quality"):
        removed[key] = pipeline.begin_stage(ref, run_dir, key)
        for name in pipeline.list_input_shards(ref, run_dir, key):
            pipeline.run_stage_shard(ref, run_dir, key, name)
    removed["dedup"] = pipeline.begin_stage(ref, run_dir, "dedup")
    names = pipeline.list_input_shards(ref, run_dir, "dedup")
    for name in names:
        pipeline.dedup_signatures_shard(ref, run_dir, name)
    pipeline.dedup_cluster(ref, run_dir)
    for name in names:
        pipeline.dedup_filter_shard(ref, run_dir, name)
    return removed


def test_input_dirs_skip_disabled_stages():
    cfg = parse_config({"quality": {"enabled": False}})
    run = "/r"
    assert pipeline.input_dir(cfg, run, "urlfilter") == "/r/00_crawl"
    assert pipeline.input_dir(cfg, run, "extract") == "/r/01_urlfilter"
    assert pipeline.input_dir(cfg, run, "dedup") == "/r/03_langid"  # quality is off
    docs = parse_config({"source": {"kind": "docs", "docs_paths": []}})
    assert pipeline.source_dir(docs, run) == "/r/02_extract"
    assert pipeline.input_dir(docs, run, "langid") == "/r/02_extract"
    assert not pipeline.enabled(docs, "extract") and not pipeline.enabled(docs, "urlfilter")


def test_cleaned_documents_run_through_langid_quality_dedup_pii_tokens(tmp_path):
    docs = tmp_path / "docs.jsonl"
    texts = [ARTICLE + " Ada wrote to ada@example.org about the gears.", OTHER_1, OTHER_2]
    rows = [{"text": t, "url": f"https://a.example/{i}"} for i, t in enumerate(texts)]
    rows.append({"text": texts[0], "url": "https://b.example/copy"})
    rows.append({"text": "Le moulin est très ancien et les visiteurs aiment beaucoup le musée du village. " * 10,
                 "url": "https://a.example/fr"})
    docs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "docs", "partition": "p1"},
                        "source": {"kind": "docs", "docs_paths": [str(docs)]},
                        "tokenize": {"source": "train", "train": {"vocab_size": 300}}})
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    pipeline.run_source(ref, run_dir)
    _through_dedup(ref, run_dir)
    for name in pipeline.list_input_shards(ref, run_dir, "pii"):
        pipeline.run_stage_shard(ref, run_dir, "pii", name)
    pipeline.prepare_tokenizer(ref, run_dir)
    for name in pipeline.list_input_shards(ref, run_dir, "tokens"):
        pipeline.run_stage_shard(ref, run_dir, "tokens", name)

    funnel = {r["stage"]: r for r in report.funnel(shards.filesystem(run_dir), run_dir)}
    assert funnel["02_extract"]["kept"] == 5
    assert funnel["03_langid"]["reasons"] == {"lang_not_target": 1}
    assert funnel["05_dedup"]["reasons"] == {"exact_duplicate": 1}
    clean = _read(f"{run_dir}/06_pii").column("text").to_pylist()
    assert len(clean) == 3 and not any("@example.org" in t for t in clean)
    assert _read(f"{run_dir}/07_tokens").num_rows == 3
    assert report.verify_run(shards.filesystem(run_dir), run_dir) == []


def _two_source_shards(tmp_path) -> tuple[ConfigRef, str]:
    """Five cleaned documents ingested as two source shards (3 + 2) of a fresh run."""
    docs = tmp_path / "docs.jsonl"
    texts = [ARTICLE, OTHER_1, OTHER_2, ARTICLE + " A second edition.", OTHER_1 + " Updated."]
    docs.write_text("\n".join(json.dumps({"text": t, "url": f"https://a.example/{i}"}) for i, t in enumerate(texts)))
    cfg = parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "docs", "partition": "p1"},
                        "source": {"kind": "docs", "docs_paths": [str(docs)], "records_per_shard": 3}})
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    pipeline.run_source(ref, run_dir)
    return ref, run_dir


def test_a_stage_drops_output_shards_whose_input_shard_is_gone(tmp_path):
    """An output shard without its input shard (its source file read again into fewer shards) would
    be read on by later stages, and its signatures would take part in dedup's clustering."""
    ref, run_dir = _two_source_shards(tmp_path)
    fs = shards.filesystem(run_dir)

    assert _through_dedup(ref, run_dir) == {"langid": [], "quality": [], "dedup": []}
    assert shards.list_shards(fs, f"{run_dir}/05_dedup") == ["part-00000", "part-00001"]
    shards.remove_shard(fs, f"{run_dir}/02_extract", "part-00001")  # the source now has one shard
    removed = _through_dedup(ref, run_dir)
    assert removed == {"langid": ["part-00001"], "quality": ["part-00001"], "dedup": ["part-00001", "part-00001"]}
    for d in ("03_langid", "04_quality", "05_dedup", "05_dedup/_signatures"):
        assert shards.list_shards(fs, f"{run_dir}/{d}") == ["part-00000"], d
        assert not (tmp_path / "runs" / "docs" / "p1" / d / "part-00001.parquet").exists()
    clusters = pipeline.dedup_cluster(ref, run_dir)
    assert clusters["rows_in"] == shards.load_manifest(fs, f"{run_dir}/04_quality", "part-00000")["counters"]["kept"]
    assert report.verify_run(fs, run_dir) == []


def test_an_input_shard_being_rewritten_is_neither_an_orphan_nor_skipped(tmp_path):
    """Another run of the partition redoes langid while this one starts quality: langid's shard has
    its data file but (for a moment) no manifest. Before, quality deleted its output for that shard
    as an orphan and mapped over the rest: documents gone, and the partition still looked complete."""
    ref, run_dir = _two_source_shards(tmp_path)
    _through_dedup(ref, run_dir)
    fs = shards.filesystem(run_dir)
    # The other run's write_result for 03_langid/part-00001: old manifest gone, data still there.
    shards.remove_if_exists(fs, shards.manifest_path(f"{run_dir}/03_langid", "part-00001"))
    assert pipeline.begin_stage(ref, run_dir, "quality") == []
    assert shards.list_shards(fs, f"{run_dir}/04_quality") == ["part-00000", "part-00001"]
    with pytest.raises(shards.ShardError, match=r"03_langid: 1 shards without a manifest \(part-00001\)"):
        pipeline.list_input_shards(ref, run_dir, "quality")


def test_a_killed_write_whose_input_is_gone_is_cleared_and_blocks_nothing(tmp_path):
    ref, run_dir = _two_source_shards(tmp_path)
    _through_dedup(ref, run_dir)
    fs = shards.filesystem(run_dir)
    # Killed inside write_result of 03_langid/part-00001 (old manifest gone, data stays), then the
    # source read again into one shard: 02_extract/part-00001 is gone.
    shards.remove_if_exists(fs, shards.manifest_path(f"{run_dir}/03_langid", "part-00001"))
    shards.remove_shard(fs, f"{run_dir}/02_extract", "part-00001")
    assert pipeline.begin_stage(ref, run_dir, "langid") == ["part-00001"]  # the stray data file goes
    assert shards.list_data_names(fs, f"{run_dir}/03_langid") == ["part-00000"]
    for name in pipeline.list_input_shards(ref, run_dir, "langid"):
        pipeline.run_stage_shard(ref, run_dir, "langid", name)
    assert pipeline.begin_stage(ref, run_dir, "quality") == ["part-00001"]  # an orphan now: removed
    assert pipeline.list_input_shards(ref, run_dir, "quality") == ["part-00000"]  # and nothing blocks


def test_shards_of_an_earlier_stage_version_are_redone(tmp_path, monkeypatch):
    """A code change that alters a stage's output for the same config (the quality tokenizer, dedup's
    normalisation) bumps the stage's version: its old shards are not reused as done."""
    from pipeline_lib.dedup import steps
    from pipeline_lib.quality import QualityStage

    ref, run_dir = _two_source_shards(tmp_path)
    _through_dedup(ref, run_dir)
    assert pipeline.dedup_signatures_shard(ref, run_dir, "part-00000")["skipped"]
    assert pipeline.run_stage_shard(ref, run_dir, "quality", "part-00000")["skipped"]
    monkeypatch.setattr(steps._SignatureStep, "version", steps._SignatureStep.version + 1)
    monkeypatch.setattr(QualityStage, "version", QualityStage.version + 1)
    assert not pipeline.dedup_signatures_shard(ref, run_dir, "part-00000")["skipped"]
    assert not pipeline.run_stage_shard(ref, run_dir, "quality", "part-00000")["skipped"]


def test_a_stage_keeps_outputs_made_from_another_input_folder(tmp_path):
    """Enabling langid after quality ran from 02_extract: quality's shards are not orphans of the
    (still empty) 03_langid, and a quality run before langid's must not delete them."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": t, "url": f"https://a.example/{i}"})
                              for i, t in enumerate([ARTICLE, OTHER_1, OTHER_2])))

    def config(langid: bool):
        return parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "docs", "partition": "p1"},
                             "source": {"kind": "docs", "docs_paths": [str(docs)], "records_per_shard": 2},
                             "langid": {"enabled": langid}})

    ref = ConfigRef.of(config(False))
    run_dir = pipeline.prepare_run(config(False))
    pipeline.run_source(ref, run_dir)
    pipeline.begin_stage(ref, run_dir, "quality")
    for name in pipeline.list_input_shards(ref, run_dir, "quality"):
        pipeline.run_stage_shard(ref, run_dir, "quality", name)
    fs = shards.filesystem(run_dir)
    assert shards.list_shards(fs, f"{run_dir}/04_quality") == ["part-00000", "part-00001"]
    assert pipeline.begin_stage(ConfigRef.of(config(True)), run_dir, "quality") == []
    assert shards.list_shards(fs, f"{run_dir}/04_quality") == ["part-00000", "part-00001"]


def _stamps(root) -> dict[str, int]:
    """mtime of every file, keyed by its path under ``root`` (part-00000.parquet is in several folders)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_crawl_and_warc_sources_share_00_crawl_and_resume_independently(tmp_path, shared_data):
    warc = shared_data / "warc" / "resiliparse" / "warcfile.warc.gz"
    cfg = parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "both", "partition": "p"},
                        "source": {"kind": "crawl+warc", "warc_paths": [str(warc)]},
                        "crawl": {"seeds": ["{sample_site}"], "max_pages": 12, "pages_per_shard": 5,
                                  # a fixed port: the URLs (and so the crawl's identity) must not change
                                  "sample_site": {"enabled": True, "port": free_port()}}})
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    first = pipeline.run_source(ref, run_dir)
    fs = shards.filesystem(run_dir)
    crawl_dir = f"{run_dir}/00_crawl"
    names = shards.list_shards(fs, crawl_dir)
    sources = {n: shards.load_manifest(fs, crawl_dir, n)["source"] for n in names}
    assert {"crawl", "warc"} == set(sources.values())
    assert all((s == "warc") == (int(n.split("-")[1]) >= 500_000) for n, s in sources.items())
    assert first["crawl"]["pages"] + first["warc"]["pages"] == sum(
        shards.load_manifest(fs, crawl_dir, n)["counters"]["kept"] for n in names)
    # A rerun finds both sources complete: nothing is written again.
    before = _stamps(tmp_path / "runs")
    again = pipeline.run_source(ref, run_dir)
    assert again["crawl"]["skipped"] and again["warc"]["skipped"]
    assert before == _stamps(tmp_path / "runs")


def test_beside_warc_ingest_the_crawler_leaves_temp_files_to_the_source_setup(tmp_path, shared_data):
    """With crawl+warc the ingest jobs write into 00_crawl while the crawl starts: the crawl must not
    delete their in-flight temp files; the source setup cleans killed writes before any job starts."""
    from pipeline_lib.crawl.crawler import Crawler

    warc = shared_data / "warc" / "resiliparse" / "warcfile.warc.gz"
    cfg = parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "both", "partition": "p"},
                        "source": {"kind": "crawl+warc", "warc_paths": [str(warc)]},
                        "crawl": {"seeds": ["http://127.0.0.1:9/"]}})
    ref, run_dir = ConfigRef.of(cfg), pipeline.prepare_run(cfg)
    crawl_dir = tmp_path / "runs" / "both" / "p" / "00_crawl"
    (crawl_dir / "_manifests").mkdir(parents=True)
    in_flight = crawl_dir / "_manifests" / ".tmp-part-500000.manifest.json"
    in_flight.write_text("{}")
    Crawler(cfg, shards.filesystem(str(crawl_dir)), str(crawl_dir)).load()
    assert in_flight.exists()
    pipeline.source_jobs(ref, run_dir)  # before any ingest job or the crawl: a leftover of a killed write
    assert not in_flight.exists()


def test_the_funnel_shows_the_stages_of_the_run_dirs_own_config_only(tmp_path):
    # Quality ran once, then the config turned it off: its old folder showed in the funnel of
    # `run`, `inspect` and the UI artifact as if it had run, and the counts no longer chained.
    import pyarrow as pa

    from pipeline_lib.config import dump_config
    from pipeline_lib.stage import StageResult, write_result

    run_dir = str(tmp_path / "run")
    fs = shards.filesystem(run_dir)
    table = pa.table({"id": ["a", "b"], "text": ["x", "y"]})
    for stage in ("02_extract", "03_langid", "04_quality", "05_dedup"):
        write_result(fs, f"{run_dir}/{stage}", "part-00000", stage, 2, StageResult.keep_all(table), "h", [], 0.0)
    assert [r["stage"] for r in report.funnel(fs, run_dir)] == ["02_extract", "03_langid", "04_quality", "05_dedup"]

    cfg = parse_config({"source": {"kind": "docs"}, "quality": {"enabled": False}})
    assert pipeline.chain_dirs(cfg) == ["02_extract", "03_langid", "05_dedup", "06_pii", "07_tokens", "08_train"]
    (tmp_path / "run" / "config.yaml").write_text(dump_config(cfg))
    assert [r["stage"] for r in report.funnel(fs, run_dir)] == ["02_extract", "03_langid", "05_dedup"]
    assert report.stale_stages(fs, run_dir) == ["04_quality"]
