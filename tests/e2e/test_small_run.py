"""`crawl2model run` on configs/small.yaml, end to end, on the embedded Prefect."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import yaml

import pipeline_lib.sample_site
from pipeline_lib.schema import STAGES
from tests.e2e.support import REPO, run_cli

SHARD_STAGES = STAGES[:-1]  # 00_crawl .. 07_tokens
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

# The demo funnel README.md promises for configs/small.yaml on the bundled site:
# stage -> (shards, rows in, kept, rejected, reasons).
README_FUNNEL = {
    "00_crawl": (5, 49, 48, 1, {"robots_disallowed": 1}),
    "01_urlfilter": (5, 48, 46, 2, {"blocklist_url": 2}),
    "02_extract": (5, 46, 46, 0, {}),
    "03_langid": (5, 46, 43, 3, {"lang_not_target": 3}),
    "04_quality": (5, 43, 32, 11, {"gopher_bullet_lines": 1, "gopher_short_doc": 10}),
    "05_dedup": (5, 32, 28, 4, {"exact_duplicate": 1, "near_duplicate": 3}),
    "06_pii": (5, 28, 28, 0, {}),
    "07_tokens": (5, 28, 28, 0, {}),
}
README_NOTES = {"06_pii": "scrubbed: EMAIL_ADDRESS=5, IP_ADDRESS=1, PHONE_NUMBER=5"}  # after the reasons


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


def test_pandas_polars_and_duckdb_read_each_stage_as_the_readme_shows(small_run):
    """The README's reads, each tool on every stage: the kept rows, and the rejects beside them."""
    import duckdb
    import pandas as pd
    import polars as pl

    run_dir = small_run["run_dir"]
    for stage, (_shards, _rows_in, kept, rejected, reasons) in README_FUNNEL.items():
        folder = run_dir / stage
        assert len(pd.read_parquet(folder)) == kept, stage  # a folder: _manifests/, _rejected/ skipped
        assert pl.read_parquet(f"{folder}/*.parquet").height == kept, stage
        assert duckdb.sql(f"SELECT count(*) FROM '{folder}/*.parquet'").fetchall() == [(kept,)], stage
        if rejected:
            got = dict(duckdb.sql(f"SELECT reject_reason, count(*) FROM '{folder}/_rejected/*.parquet' "
                                  "GROUP BY 1").fetchall())
            assert got == reasons, stage
            assert pl.read_parquet(f"{folder}/_rejected/*.parquet").height == rejected, stage


def test_cli_prints_funnel_and_where_outputs_are(small_run):
    out = small_run["proc"].stdout
    assert str(small_run["run_dir"]) in out
    # The funnel table the README shows, row by row, in the run's own output.
    lines = out.splitlines()
    assert re.search(r"^stage\s+shards\s+rows in\s+kept\s+rejected\s+reasons$", out, re.M), out
    for stage, (shards_, rows_in, kept, rejected, reasons) in README_FUNNEL.items():
        text = "; ".join(t for t in (", ".join(f"{k}={v}" for k, v in reasons.items()), README_NOTES.get(stage)) if t)
        pattern = rf"^{stage}\s+{shards_}\s+{rows_in}\s+{kept}\s+{rejected}" + (rf"\s+{re.escape(text)}$" if text else r"\s*$")
        assert [l for l in lines if re.fullmatch(pattern, l.rstrip())], f"no funnel row {pattern!r} in:\n{out}"
    # And the README shows exactly these rows, as printed.
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    printed = [l.rstrip() for l in lines if l.split(" ", 1)[0] in README_FUNNEL]
    assert printed and all(row in readme for row in printed), [row for row in printed if row not in readme]


def test_the_suggested_sample_command_runs_as_printed(small_run):
    import shlex
    import subprocess

    (line,) = [l for l in small_run["proc"].stdout.splitlines() if l.startswith("try: ")]
    command = shlex.split(line.removeprefix("try: "))
    # `make run` does not activate the venv: the hint names a command this shell can find.
    assert command[0] != "crawl2model" or shutil.which("crawl2model")
    proc = subprocess.run(command + ["--max-new-tokens", "5", "--seed", "1"], cwd=REPO,  # where the run was started
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("The garden")


def test_inspect_json_shows_the_readme_funnel(small_run):
    proc = run_cli(["inspect", str(small_run["run_dir"]), "--json"], small_run["tmp"])
    assert proc.returncode == 0, proc.stderr
    stages = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert set(SHARD_STAGES) <= set(stages)
    for s in stages.values():
        assert s["rows_in"] == s["kept"] + s["rejected"]
    got = {stage: (s["shards"], s["rows_in"], s["kept"], s["rejected"], s["reasons"])
           for stage, s in stages.items() if stage in README_FUNNEL}
    assert got == README_FUNNEL


def test_the_sample_sites_email_addresses_are_scrubbed(small_run):
    run_dir = small_run["run_dir"]
    pages = Path(pipeline_lib.sample_site.__file__).parent / "pages"
    addresses = set()
    for page in pages.rglob("*.html"):
        addresses |= set(EMAIL.findall(page.read_text(encoding="utf-8")))
    assert len(addresses) >= 3, addresses
    # They reach the PII stage (its input is 05_dedup) ...
    before = "\n".join(pq.read_table(run_dir / "05_dedup", columns=["text"]).column("text").to_pylist())
    occurrences = sum(before.count(a) for a in addresses)
    assert occurrences >= 3, f"too few of {sorted(addresses)} reach 06_pii for this test to mean anything"
    # ... and none leaves it; each found address became a placeholder, and the manifests count them.
    after = "\n".join(pq.read_table(run_dir / "06_pii", columns=["text"]).column("text").to_pylist())
    assert not [a for a in addresses if a in after]
    assert after.count("<EMAIL>") >= occurrences
    emails_counted = sum(json.loads(m.read_text())["counters"].get("pii.EMAIL_ADDRESS", 0)
                         for m in (run_dir / "06_pii" / "_manifests").glob("part-*.manifest.json"))
    assert emails_counted >= occurrences > 0


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


def test_a_run_with_an_input_file_failed_as_a_whole_names_it_and_exits_1(tmp_path):
    # The run went on with the readable file and said "done" with exit 0: the failed file's
    # documents were missing and nothing named it.
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"Document number {i} is about gardens and rivers.",
                                        "url": f"https://example.org/{i}"}) + "\n" for i in range(4)))
    no_text = tmp_path / "no-text.jsonl"
    no_text.write_text("".join(json.dumps({"content": f"doc {i}"}) + "\n" for i in range(3)))
    cfg = tmp_path / "docs.yaml"
    cfg.write_text(yaml.safe_dump({
        "run": {"name": "f", "partition": "p", "data_root": str(tmp_path / "runs"), "workers": 1,
                "task_runner": "thread"},
        "source": {"kind": "docs", "docs_paths": [str(good), str(no_text)]},
        "quality": {"enabled": False}, "dedup": {"enabled": False}, "pii": {"enabled": False},
        "tokenize": {"source": "pretrained", "encoding": "gpt2"}, "train": {"enabled": False}}))
    proc = run_cli(["run", "--config", str(cfg)], tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-4000:]
    last = proc.stderr.strip().splitlines()[-2:]  # said again at the very end, after the funnel
    assert last[0].startswith("error: 1 of 2 input files failed as a whole"), proc.stderr[-3000:]
    assert last[1].strip().startswith(f"{no_text}: docs_no_text_column"), last
    assert re.search(r"07_tokens +\d+ +4 ", proc.stdout), proc.stdout  # every stage ran on what could be read


def test_a_run_dir_the_config_contradicts_is_refused_in_one_line_before_prefect_starts(tmp_path):
    # Found inside the crawl flow, the refusal came after ~65 lines and two Prefect tracebacks.
    from pipeline_lib import pipeline
    from pipeline_lib.config import load_config

    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": f"doc {i}", "url": f"u{i}"}) + "\n"
                                                 for i in range(3)))
    config = {"run": {"name": "r", "partition": "p", "data_root": str(tmp_path / "runs"), "workers": 1,
                      "task_runner": "thread"},
              "source": {"kind": "docs", "docs_paths": ["docs.jsonl"], "records_per_shard": 10}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(config))
    cfg = load_config(tmp_path / "a.yaml")
    pipeline.prepare_run(cfg)
    pipeline.run_source(pipeline.ConfigRef.of(cfg), cfg.run_dir)
    layout = next((tmp_path / "runs").rglob("layout.json"))
    before = layout.read_text()
    pipeline.check_source_state(cfg)  # the same config: nothing to refuse

    config["source"]["records_per_shard"] = 20
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli(["run", "--config", str(tmp_path / "b.yaml")], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {cfg.run_dir}/02_extract was ingested with records_per_shard 10, this run asks for 20; "
        "rerun with 10 or ingest into a new run dir"], proc.stderr
    assert not (tmp_path / "prefect-home").exists() and layout.read_text() == before


def test_a_crawl_without_seeds_is_refused_before_any_work(tmp_path):
    # configs/pipeline.yaml as it stands (kind crawl, no seeds) ran every stage on nothing and
    # failed at training with Prefect tracebacks, leaving a run dir behind.
    cfg = tmp_path / "empty.yaml"
    cfg.write_text(yaml.safe_dump({"run": {"data_root": str(tmp_path / "runs")}}))
    proc = run_cli(["run", "--config", str(cfg)], tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: crawl.seeds is empty: source.kind crawl needs start URLs (crawl.seeds, '{sample_site}' for the "
        "bundled site), or set source.kind to warc or docs"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "prefect-home").exists()
    # WARC files numbered beside a crawl, no seeds: a WARC ingest, as it always was.
    from pipeline_lib import pipeline
    from pipeline_lib.config import parse_config

    warc = tmp_path / "a.warc"
    warc.write_bytes(b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n")
    pipeline.check_source_state(parse_config({"run": {"data_root": str(tmp_path / "runs")},
                                              "source": {"kind": "crawl+warc", "warc_paths": [str(warc)]}}))
