"""Ingest resume state: a rerun or a resumed kill neither loses nor duplicates a document.

A file that failed is read again once fixed; a resume with another records_per_shard, reader
option or input list (other than files appended) is refused; a layout file from before these
checks is accepted and filled in.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline_lib.crawl.ingest as ingest
from pipeline_lib import pipeline, shards
from pipeline_lib.config import parse_config
from pipeline_lib.crawl import ingest_docs
from pipeline_lib.pipeline import ConfigRef
from tests.lib.shard_support import read_stage


class Killed(Exception):
    pass


def _lines(name: str, n: int) -> list[str]:
    return [json.dumps({"url": f"http://{name}/{i}", "text": f"doc {name} {i}"}) + "\n" for i in range(n)]


def _jsonl(path: Path, n: int, name: str | None = None) -> str:
    path.write_text("".join(_lines(name or path.stem, n)))
    return str(path)


def _kept_urls(out: str) -> list[str]:
    """Every kept row, from the shards the manifests list and from the data files on disk: both
    must agree (a data file no manifest lists is still read by a plain Parquet reader)."""
    table = read_stage(shards.filesystem(out), out)
    listed = table.column("url").to_pylist() if table is not None else []
    on_disk = [u for p in sorted(Path(out).glob("part-*.parquet")) for u in pq.read_table(p).column("url").to_pylist()]
    assert sorted(listed) == sorted(on_disk)
    return listed


def _rejected(out: str) -> list[str]:
    table = read_stage(shards.filesystem(out), out, "rejected")
    return table.column("reject_reason").to_pylist() if table is not None else []


def _ingest(paths: list[str], out: str, **kw) -> dict:
    return ingest_docs(paths, shards.filesystem(out), out, **kw)


def _state(out: str) -> Path:
    return Path(out) / ingest.STATE_DIR


# --- 1. a file that failed is not marked done, and its rerun yields every row exactly once ---------

def test_a_missing_file_is_read_once_it_is_there(tmp_path):
    out, src = str(tmp_path / "out"), tmp_path / "d.jsonl"
    first = _ingest([str(src)], out)
    assert first["reasons"] == {"docs_unreadable": 1}
    assert not (_state(out) / "docs-00000.json").exists()
    again = _ingest([str(src)], out)  # still missing: read again, nothing rewritten
    assert again["skipped"] is False and again["shards_written"] == 0 and again["files_failed"] == 1

    _jsonl(src, 1500)
    fixed = _ingest([str(src)], out)
    urls = _kept_urls(out)
    assert fixed["docs"] == 1500 and fixed["rejected"] == 0
    assert len(urls) == len(set(urls)) == 1500 and _rejected(out) == []
    assert fixed["files_failed"] == 0 and first["files_failed"] == 1
    assert _ingest([str(src)], out)["skipped"] is True


def _truncated_gz(path: Path, lines: list[str], intact: int) -> str:
    """A download cut short: the first ``intact`` lines, then a gzip stream that ends in its header."""
    rest = gzip.compress("".join(lines[intact:]).encode())
    path.write_bytes(gzip.compress("".join(lines[:intact]).encode()) + rest[:10])
    return str(path)


def test_a_truncated_download_fixed_gives_every_row_once(tmp_path):
    src, out = tmp_path / "d.jsonl.gz", str(tmp_path / "out")
    lines = _lines("d", 2500)
    first = _ingest([_truncated_gz(src, lines, 1200)], out)
    assert first["reasons"] == {"docs_corrupt": 1}
    assert first["docs"] == 1200 and first["shards"] == 2  # chunk 1: 200 documents and the docs_corrupt row
    assert not (_state(out) / "docs-00000.json").exists()

    src.write_bytes(gzip.compress("".join(lines).encode()))  # the download done again
    fixed = _ingest([str(src)], out)
    urls = _kept_urls(out)
    assert fixed["docs"] == 2500 and fixed["rejected"] == 0
    assert len(urls) == len(set(urls)) == 2500 and _rejected(out) == []
    assert shards.list_shards(shards.filesystem(out), out) == ["part-00000", "part-00001", "part-00002"]
    assert _ingest([str(src)], out)["skipped"] is True


def test_a_shard_with_as_many_rows_but_other_rows_is_rewritten(tmp_path):
    """The partly read chunk holds k documents plus the docs_corrupt row; the fixed file's first chunk
    holds the same counts (its row k has no text) but other rows: it is rewritten, not kept."""
    k = 299
    lines = _lines("d", 600)
    lines[k] = json.dumps({"url": "http://d/notext", "text": None}) + "\n"
    src, out = tmp_path / "d.jsonl.gz", str(tmp_path / "out")
    rps = k + 1  # one full chunk: k documents and the docs_corrupt row
    first = _ingest([_truncated_gz(src, lines, k)], out, records_per_shard=rps)
    assert (first["docs"], first["rejected"], first["shards"]) == (k, 1, 1)
    assert _rejected(out) == ["docs_corrupt"]

    src.write_bytes(gzip.compress("".join(lines).encode()))
    fixed = _ingest([str(src)], out, records_per_shard=rps)
    urls = _kept_urls(out)
    assert fixed["docs"] == 599 and fixed["reasons"] == {"missing_text": 1}
    assert len(urls) == len(set(urls)) == 599 and _rejected(out) == ["missing_text"]


def test_extra_chunks_of_an_earlier_longer_read_are_removed(tmp_path):
    src, out = tmp_path / "d.jsonl.gz", str(tmp_path / "out")
    lines = _lines("d", 3000)
    first = _ingest([_truncated_gz(src, lines, 2700)], out)
    assert first["docs"] == 2700 and first["shards"] == 3
    src.write_bytes(gzip.compress("".join(lines[:1500]).encode()))  # replaced by a complete, shorter file
    fixed = _ingest([str(src)], out)
    urls = _kept_urls(out)
    assert fixed["docs"] == 1500 and fixed["shards"] == 2
    assert len(urls) == len(set(urls)) == 1500 and _rejected(out) == []
    assert shards.list_shards(shards.filesystem(out), out) == ["part-00000", "part-00001"]
    assert not list(Path(out).rglob("part-00002*"))


def test_a_missing_text_column_fixed_in_the_file_is_read_again(tmp_path):
    src, out = tmp_path / "d.parquet", str(tmp_path / "out")
    pq.write_table(pa.table({"body": [f"doc {i}" for i in range(1200)]}), src)
    first = _ingest([str(src)], out)
    assert first["reasons"] == {"docs_no_text_column": 1}
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(1200)],
                             "url": [f"http://d/{i}" for i in range(1200)]}), src)
    fixed = _ingest([str(src)], out)
    urls = _kept_urls(out)
    assert fixed["docs"] == 1200 and len(urls) == len(set(urls)) == 1200 and _rejected(out) == []


def test_an_unknown_format_is_not_marked_done(tmp_path):
    src, out = tmp_path / "d.csv", str(tmp_path / "out")
    src.write_text("text\nhello\n")
    assert _ingest([str(src)], out)["reasons"] == {"docs_unknown_format": 1}
    assert not (_state(out) / "docs-00000.json").exists()


def test_a_marker_an_earlier_version_wrote_for_a_failed_file_does_not_skip_it(tmp_path):
    src, out = tmp_path / "d.jsonl", str(tmp_path / "out")
    _ingest([str(src)], out)
    (_state(out) / "docs-00000.json").write_text(json.dumps({  # as the earlier version wrote it
        "input_file": str(src), "first_shard": 0, "num_shards": 1, "kept": 0, "rejected": 1,
        "reasons": {"docs_unreadable": 1}, "counters": {}}))
    _jsonl(src, 10)
    assert _ingest([str(src)], out)["docs"] == 10
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 10


def test_the_marker_records_the_reader_options_and_a_change_is_refused(tmp_path):
    src, out = _jsonl(tmp_path / "d.jsonl", 20), str(tmp_path / "out")
    _ingest([src], out, records_per_shard=7)
    marker = json.loads((_state(out) / "docs-00000.json").read_text())
    assert marker["records_per_shard"] == 7
    assert marker["reader"] == {"text_column": "text", "url_column": "url"}
    with pytest.raises(ValueError, match=r"out was ingested with reader .*'text'.*'body'.*new run dir"):
        _ingest([src], out, records_per_shard=7, text_column="body")
    # A layout file written before reader options were recorded: the marker still refuses.
    (_state(out) / "layout.json").write_text(json.dumps({"file_shard_stride": ingest.FILE_SHARD_STRIDE}))
    with pytest.raises(ValueError, match=r"d.jsonl ingested with reader .*'url'.*'link'"):
        _ingest([src], out, records_per_shard=7, url_column="link")
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 20


# --- 2. a killed run resumed with another records_per_shard ---------------------------------------

def _killed_after(monkeypatch, n: int) -> None:
    write, done = ingest._write_shard, [0]

    def killed(*a, **k):
        if done[0] == n:
            raise Killed
        done[0] += 1
        return write(*a, **k)

    monkeypatch.setattr(ingest, "_write_shard", killed)


def test_a_resume_with_another_records_per_shard_is_refused(tmp_path, monkeypatch):
    src, out = _jsonl(tmp_path / "r.jsonl", 2500), str(tmp_path / "out")
    with monkeypatch.context() as m:
        _killed_after(m, 2)
        with pytest.raises(Killed):
            _ingest([src], out, records_per_shard=1000)
    with pytest.raises(ValueError, match=r"out was ingested with records_per_shard 1000, this run asks for 500"):
        _ingest([src], out, records_per_shard=500)
    assert len(_kept_urls(out)) == 2000
    resumed = _ingest([src], out, records_per_shard=1000)
    urls = _kept_urls(out)
    assert resumed["docs"] == 2500 and resumed["shards_written"] == 1
    assert len(urls) == len(set(urls)) == 2500


def test_an_earlier_layout_file_is_filled_in_and_a_resume_is_still_exact(tmp_path, monkeypatch):
    """A layout without records_per_shard (an earlier run dir of this version): the resume is
    accepted, each already written shard kept only if it holds what the new chunking puts there."""
    src, out = _jsonl(tmp_path / "r.jsonl", 2500), str(tmp_path / "out")
    with monkeypatch.context() as m:
        _killed_after(m, 2)
        with pytest.raises(Killed):
            _ingest([src], out, records_per_shard=1000)
    layout = _state(out) / "layout.json"
    layout.write_text(json.dumps({"file_shard_stride": ingest.FILE_SHARD_STRIDE}))
    resumed = _ingest([src], out, records_per_shard=500)
    urls = _kept_urls(out)
    assert resumed["docs"] == 2500 and resumed["shards"] == 5
    assert len(urls) == len(set(urls)) == 2500
    assert json.loads(layout.read_text()) == {
        "file_shard_stride": ingest.FILE_SHARD_STRIDE, "kind": "docs", "first_shard": 0, "records_per_shard": 500,
        "reader": {"text_column": "text", "url_column": "url"}, "inputs": [src]}


# --- 3. a rerun with another input list ----------------------------------------------------------

def test_reordered_removed_or_replaced_inputs_are_refused_appended_ones_ingested(tmp_path):
    a, b, c = (_jsonl(tmp_path / f"{n}.jsonl", k) for n, k in (("A", 2500), ("B", 300), ("C", 40)))
    out = str(tmp_path / "out")
    assert _ingest([a], out)["docs"] == 2500
    for inputs in ([b, a], [b]):
        with pytest.raises(ValueError, match=r"out: the input files differ from what this run dir was ingested "
                                             r"from .*appended at the end.*Use a new run dir"):
            _ingest(inputs, out)
    appended = _ingest([a, b], out)
    assert appended["docs"] == 2800 and appended["files_skipped"] == 1
    for inputs in ([a], [a, c], [b, a]):
        with pytest.raises(ValueError, match="the input files differ"):
            _ingest(inputs, out)
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 2800
    assert _ingest([a, b], out)["skipped"] is True


def test_a_marker_naming_another_file_than_the_job_is_refused(tmp_path):
    a, b = _jsonl(tmp_path / "A.jsonl", 30), _jsonl(tmp_path / "B.jsonl", 5)
    out = str(tmp_path / "out")
    _ingest([a], out)
    # A layout file without the input list (an earlier run dir of this version): the marker decides.
    (_state(out) / "layout.json").write_text(json.dumps({"file_shard_stride": ingest.FILE_SHARD_STRIDE}))
    with pytest.raises(ValueError, match=r"docs-00000.json records .*A.jsonl at input position 0, this run has "
                                         r".*B.jsonl there"):
        _ingest([b, a], out)
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 30


def test_the_pipeline_source_refuses_a_changed_input_list(tmp_path):
    a, b = _jsonl(tmp_path / "A.jsonl", 25), _jsonl(tmp_path / "B.jsonl", 7)

    def config(paths: list[str]):
        return parse_config({"run": {"data_root": str(tmp_path / "runs"), "name": "r", "partition": "p"},
                             "source": {"kind": "docs", "docs_paths": paths, "records_per_shard": 10}})

    cfg = config([a])
    run_dir = pipeline.prepare_run(cfg)
    assert pipeline.run_source(ConfigRef.of(cfg), run_dir)["docs"]["docs"] == 25
    with pytest.raises(ValueError, match="the input files differ"):
        pipeline.source_jobs(ConfigRef.of(config([b, a])), run_dir)
    assert pipeline.run_source(ConfigRef.of(config([a, b])), run_dir)["docs"]["docs"] == 32
    urls = _kept_urls(pipeline.source_dir(cfg, run_dir))
    assert len(urls) == len(set(urls)) == 32


def test_a_file_listed_twice_is_refused_before_anything_is_written(tmp_path):
    from pipeline_lib.crawl.ingest import jobs_for, run_jobs

    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "one document", "url": "https://a.example/1"}\n')
    out = tmp_path / "out"
    jobs = jobs_for("docs", [str(src), str(src)], str(out), 10, None, 0, "02_extract", "text", "url")
    with pytest.raises(ValueError, match="listed more than once"):
        run_jobs(jobs)
    assert not list(out.rglob("*.parquet"))
    # The same file spelled another way (relative, ./, through a symlink) is the same file.
    (tmp_path / "link.jsonl").symlink_to(src)
    for other in (os.path.relpath(src), f"{tmp_path}/./a.jsonl", str(tmp_path / "link.jsonl")):
        jobs = jobs_for("docs", [str(src), other], str(out), 10, None, 0, "02_extract", "text", "url")
        with pytest.raises(ValueError, match=r"listed more than once"):
            run_jobs(jobs)
    assert not list(out.rglob("*.parquet"))


def test_a_file_that_never_finished_may_be_replaced_in_place(tmp_path):
    out = str(tmp_path / "out")
    typo, good, b = tmp_path / "typo.jsonl", _jsonl(tmp_path / "A.jsonl", 1200), _jsonl(tmp_path / "B.jsonl", 7)
    first = _ingest([str(typo), b], out)
    assert first["files_failed"] == 1 and first["docs"] == 7
    fixed = _ingest([good, b], out)  # position 0 never finished: the corrected path takes its place
    assert fixed["docs"] == 1207 and fixed["files_skipped"] == 1
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 1207
    with pytest.raises(ValueError, match="the input files differ"):  # now it has finished: no longer
        _ingest([b, good], out)


def test_a_read_cut_short_keeps_the_shards_an_earlier_full_read_wrote(tmp_path):
    src = tmp_path / "d.jsonl.gz"
    full = gzip.compress("".join(_lines("d", 4000)).encode())
    src.write_bytes(full)
    out = str(tmp_path / "out")
    assert _ingest([str(src)], out)["docs"] == 4000
    (_state(out) / "docs-00000.json").unlink()  # as if killed before the marker
    src.write_bytes(full[: len(full) // 3])  # and the file is now a partial download
    cut = _ingest([str(src)], out)
    assert cut["files_failed"] == 1 and cut["reasons"].get("docs_corrupt") == 1
    assert len(set(_kept_urls(out))) == 4000  # the later shards were not removed on a failed read
    src.write_bytes(full)
    assert _ingest([str(src)], out)["files_failed"] == 0
    urls = _kept_urls(out)
    assert len(urls) == len(set(urls)) == 4000


def test_a_warc_download_cut_short_is_read_again_once_complete(tmp_path):
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from pipeline_lib.crawl import ingest_warc

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for i in range(5):
        body = f"<html><body><p>page {i} {'text ' * 200}</p></body></html>".encode()
        head = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://e.example/{i}", "response", payload=io.BytesIO(body),
                                                      http_headers=head))
    src = tmp_path / "t.warc.gz"
    src.write_bytes(buf.getvalue()[: int(len(buf.getvalue()) * 0.7)])  # the download stopped at 70%
    out = str(tmp_path / "out")
    cut = ingest_warc([str(src)], shards.filesystem(out), out)
    assert cut["reasons"] == {"warc_truncated": 1} and cut["files_failed"] == 1 and 0 < cut["pages"] < 5
    assert not (_state(out) / "warc-00000.json").exists()
    src.write_bytes(buf.getvalue())  # downloaded again, whole
    whole = ingest_warc([str(src)], shards.filesystem(out), out)
    assert whole["files_failed"] == 0 and whole["pages"] == 5
    urls = _kept_urls(out)
    assert sorted(urls) == [f"https://e.example/{i}" for i in range(5)]


def test_one_file_spelled_relative_or_absolute_is_one_input_with_one_set_of_ids(tmp_path, monkeypatch):
    # `ingest-docs docs.jsonl` then a config naming the same file (configs resolve to absolute
    # paths) was refused as "the input files differ", and the two spellings gave other ids.
    monkeypatch.chdir(tmp_path)
    _jsonl(tmp_path / "docs.jsonl", 3)
    out = str(tmp_path / "out")
    first = _ingest(["docs.jsonl"], out)
    assert first["docs"] == 3
    layout = json.loads((_state(out) / "layout.json").read_text())
    assert layout["inputs"] == [str(tmp_path / "docs.jsonl")]
    (tmp_path / "link").symlink_to(tmp_path)  # a config's paths follow symlinks (Path.resolve)
    for spelling in (str(tmp_path / "docs.jsonl"), "./docs.jsonl", "link/docs.jsonl"):
        assert _ingest([spelling], out)["files_skipped"] == 1
    other = str(tmp_path / "other")
    _ingest([str(tmp_path / "docs.jsonl")], other)
    ids = lambda d: read_stage(shards.filesystem(d), d).column("id").to_pylist()  # noqa: E731
    assert ids(out) == ids(other)
    # A folder whose layout and marker an earlier version wrote with the relative spelling is the same input.
    for f in (_state(out) / "layout.json", _state(out) / "docs-00000.json"):
        f.write_text(f.read_text().replace(str(tmp_path / "docs.jsonl"), "docs.jsonl"))
    assert _ingest([str(tmp_path / "docs.jsonl")], out)["files_skipped"] == 1
