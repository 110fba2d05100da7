"""User mistakes at the command line are one-line errors (exit 2), caught before any work."""

from __future__ import annotations

import pytest

from crawl2model.cli import main


@pytest.mark.parametrize("argv,message", [
    (["ingest-docs", "a.jsonl", "--out", "OUT", "--records-per-shard", "0"], "--records-per-shard: must be at least 1"),
    (["ingest-warc", "a.warc.gz", "--out", "OUT", "--workers", "0"], "--workers: must be at least 1"),
    (["inspect", "--storage-options", "[1]", "OUT"], "--storage-options: must be a JSON object"),
    (["verify", "--storage-options", "{bad", "OUT"], "--storage-options: not JSON"),
    # before, two flow runs were submitted and then left untracked: "sleep length must be non-negative"
    (["backfill", "--partitions", "a,b", "--poll", "-1"], "--poll: must be at least 0.1"),
])
def test_impossible_arguments_are_refused_before_any_work(tmp_path, argv, message, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_directory_where_a_manifest_should_be_is_one_line(tmp_path, command, capsys):
    (tmp_path / "00_crawl" / "_manifests" / "part-00009.manifest.json").mkdir(parents=True)
    assert main([command, str(tmp_path / "00_crawl")]) == 2  # was an IsADirectoryError traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Is a directory" in err and "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    # `crawl2model inspect --json RUN | head` printed "error: [Errno 32] Broken pipe" and exit 2.
    import os
    import subprocess
    import sys

    import pyarrow as pa

    from pipeline_lib import shards
    from pipeline_lib.stage import StageResult, write_result
    from tests.e2e.support import REPO

    table = pa.table({"id": ["a"], "text": ["x"]})
    write_result(shards.filesystem(str(tmp_path)), str(tmp_path / "03_langid"), "part-00000", "03_langid", 1,
                 StageResult.keep_all(table), "h", [], 0.0)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as in a shell
        proc = subprocess.run([sys.executable, "-m", "crawl2model.cli", "inspect", "--json", str(tmp_path)],
                              cwd=REPO, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
