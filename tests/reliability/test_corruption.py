"""Corruption and failed writes: caught before any stage reads the data; nothing half-written looks done.

A flipped byte or a truncated shard fails the manifest check inside the runner, before the stage's
``process`` sees a row, with an error naming the file and both checksums; ``crawl2model verify``
reports it too. A full disk (a real 1 MiB tmpfs when we may mount one, else ENOSPC injected at the
OS write) leaves no shard with a manifest, and the next run redoes the shard from scratch.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline_lib import shards
from pipeline_lib.report import verify_run
from pipeline_lib.stage import Stage, StageResult, run_shard, write_result
from tests.e2e.support import run_cli


class CountingStage(Stage):
    """A real (trivial) stage that remembers whether it was ever handed a table."""

    name = "counting"
    section = "run"

    def __init__(self):  # no config needed: config_hash is overridden
        self.calls = 0

    def config_hash(self) -> str:
        return "counting-v1"

    def process(self, table: pa.Table) -> StageResult:
        self.calls += 1
        return StageResult.keep_all(table)


def _docs(n: int, chars: int = 200, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(list("abcdefghij klmnop"), chars)) for _ in range(n)]
    return pa.table({"id": [f"d{i:06d}" for i in range(n)], "url": [f"https://e.org/{i}" for i in range(n)],
                     "text": texts})


def _write_input(tmp: Path, n: int = 50) -> tuple[object, str, str]:
    fs = shards.filesystem(str(tmp))
    in_dir, out_dir = str(tmp / "run" / "03_langid"), str(tmp / "run" / "04_quality")
    write_result(fs, in_dir, "part-00000", "03_langid", n, StageResult.keep_all(_docs(n)), "h", [], 0.0)
    return fs, in_dir, out_dir


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "replace_with_other_valid_parquet"])
def test_damaged_input_is_refused_before_the_stage_reads_it(tmp_path, damage):
    fs, in_dir, out_dir = _write_input(tmp_path)
    victim = Path(in_dir) / "part-00000.parquet"
    expected = _sha(victim)
    data = bytearray(victim.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 17]
    elif damage == "append":
        data += b"\x00"
    else:  # a perfectly readable Parquet file, just not the one the manifest describes
        data = bytearray(shards.table_to_parquet_bytes(_docs(50, seed=9)))
    victim.write_bytes(bytes(data))
    actual = _sha(victim)
    stage = CountingStage()
    with pytest.raises(shards.ShardError) as err:
        run_shard(stage, fs, in_dir, out_dir, "part-00000")
    msg = str(err.value)
    assert str(victim) in msg and expected in msg and actual in msg, msg
    assert stage.calls == 0, "the stage saw a corrupt shard"
    assert shards.list_shards(fs, out_dir) == [], "a shard was produced from corrupt input"
    problems = verify_run(fs, str(tmp_path / "run"))
    assert len(problems) == 1 and str(victim) in problems[0] and expected in problems[0]


def test_verify_cli_names_a_truncated_rejected_file(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    run = tmp_path / "run"
    table = _docs(20)
    result = StageResult.split(table, [None if i % 3 else "quality_bad" for i in range(20)])
    write_result(fs, str(run / "04_quality"), "part-00000", "04_quality", 20, result, "h", [], 0.0)
    ok = run_cli(["verify", str(run)], tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    victim = run / "04_quality" / "_rejected" / "part-00000.parquet"
    victim.write_bytes(victim.read_bytes()[:-5])
    bad = run_cli(["verify", str(run)], tmp_path, timeout=120)
    assert bad.returncode == 1 and str(victim) in bad.stdout and "checksum mismatch" in bad.stdout


def test_verify_notes_a_shard_without_its_manifest(tmp_path, capsys):
    """A data file whose manifest is gone is no damage (nothing reads it), but the run is not
    complete: verify said "all shards match" and nothing more."""
    from crawl2model.cli import main

    fs = shards.filesystem(str(tmp_path))
    run = tmp_path / "run"
    for name in ("part-00000", "part-00001"):
        write_result(fs, str(run / "06_pii"), name, "06_pii", 20, StageResult.keep_all(_docs(20)), "h", [], 0.0)
    (run / "06_pii" / "_manifests" / "part-00001.manifest.json").unlink()
    assert main(["verify", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "all shards match their manifests" in out
    assert "note:" in err and "1 data file(s) without a manifest (part-00001)" in err


def test_a_manifest_cut_short_is_an_error_not_a_finished_shard(tmp_path):
    fs, in_dir, out_dir = _write_input(tmp_path)
    manifest = Path(shards.manifest_path(in_dir, "part-00000"))
    manifest.write_bytes(manifest.read_bytes()[:40])
    stage = CountingStage()
    with pytest.raises(shards.ShardError, match="manifest is not valid JSON"):
        run_shard(stage, fs, in_dir, out_dir, "part-00000")
    assert stage.calls == 0


def test_verify_checks_the_dedup_clusters_file(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    clusters_dir = str(tmp_path / "run" / "05_dedup" / "_clusters")
    entry = shards.write_table_file(fs, clusters_dir, "part-00000.parquet", _docs(5))
    manifest = shards.build_manifest(stage="dedup_clusters", name="clusters", files={"part-00000": entry},
                                     schema=_docs(5).schema, counters={}, seconds=0.0, config_hash="h", inputs=[])
    shards.write_manifest(fs, clusters_dir, "clusters", manifest)
    victim = Path(clusters_dir) / "part-00000.parquet"
    victim.write_bytes(victim.read_bytes()[:-3])
    assert any(str(victim) in p for p in verify_run(fs, str(tmp_path / "run")))


def test_killed_writes_in_dedup_subfolders_are_cleared(tmp_path):
    """A kill during dedup's signature or cluster writes leaves temp files there too."""
    fs = shards.filesystem(str(tmp_path))
    stage = tmp_path / "run" / "05_dedup"
    leftovers = [stage / "_signatures" / ".tmp-1-part-00002.parquet", stage / "_clusters" / ".tmp-2-part-00000.parquet",
                 stage / "_signatures" / "_manifests" / ".tmp-3-part-00002.manifest.json",
                 stage / "_rejected" / ".tmp-4-part-00000.parquet", stage / ".tmp-5-part-00001.parquet"]
    keep = stage / "_signatures" / "part-00001.parquet"
    for p in leftovers + [keep]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert shards.remove_temp_files(fs, str(stage)) == len(leftovers)
    assert [p for p in stage.rglob("*") if p.is_file()] == [keep]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs when this process may mount one (root in a container), else None."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _incompressible(n_rows: int) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table({"id": [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**62, n_rows)],
                     "url": ["https://e.org/"] * n_rows,
                     "text": [rng.bytes(600).hex() for _ in range(n_rows)]})


def test_full_disk_leaves_no_complete_looking_shard_and_a_rerun_recovers(tmp_path, tiny_disk, monkeypatch):
    big = _incompressible(2500)  # ~3 MB of hex text: more than the 1 MiB disk holds
    if tiny_disk is not None:
        root = tiny_disk
    else:  # no mount permission: the OS write itself fails with ENOSPC
        root = tmp_path / "disk"
        real_fsync = os.fsync

        def enospc_fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", enospc_fsync)
    fs = shards.filesystem(str(root))
    out_dir = str(root / "run" / "04_quality")
    with pytest.raises(OSError) as err:
        write_result(fs, out_dir, "part-00000", "04_quality", big.num_rows, StageResult.keep_all(big), "h", [], 0.0)
    assert err.value.errno == errno.ENOSPC
    assert shards.list_shards(fs, out_dir) == []
    assert not Path(shards.data_path(out_dir, "part-00000")).exists(), "a half file under the final name"
    assert not Path(shards.manifest_path(out_dir, "part-00000")).exists()
    # The leftover temp file is cleared by the next attempt, which then succeeds with room to spare.
    shards.remove_temp_files(fs, out_dir)
    assert not any(p.name.startswith(".tmp-") for p in Path(out_dir).rglob("*"))
    if tiny_disk is None:
        monkeypatch.setattr(os, "fsync", real_fsync)
    small = big.slice(0, 200)
    write_result(fs, out_dir, "part-00000", "04_quality", small.num_rows, StageResult.keep_all(small), "h", [], 0.0)
    assert shards.list_shards(fs, out_dir) == ["part-00000"]
    assert shards.read_verified(fs, out_dir, "part-00000").num_rows == 200


def test_disk_full_after_the_kept_file_leaves_an_incomplete_shard_and_a_rerun_recovers(tmp_path, tiny_disk, monkeypatch):
    """The kept file fits and lands under its final name; the rejected file does not: no manifest."""
    docs = _incompressible(2600)
    reasons = [None] * 100 + ["quality_bad"] * 2500  # ~120 KB kept, ~1.5 MB rejected
    if tiny_disk is not None:
        root = tiny_disk
    else:  # no mount permission: the OS write of the second file (the rejected one) fails with ENOSPC
        root = tmp_path / "disk"
        real_fsync = os.fsync
        calls = []

        def enospc_on_second_file(fd):
            calls.append(fd)
            if len(calls) >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", enospc_on_second_file)
    fs = shards.filesystem(str(root))
    out_dir = str(root / "run" / "04_quality")
    with pytest.raises(OSError) as err:
        write_result(fs, out_dir, "part-00000", "04_quality", docs.num_rows, StageResult.split(docs, reasons),
                     "h", [], 0.0)
    assert err.value.errno == errno.ENOSPC
    kept = Path(shards.data_path(out_dir, "part-00000"))
    assert kept.is_file() and pq.ParquetFile(kept).metadata.num_rows == 100, "the kept file should be complete under its final name"
    assert not Path(shards.rejected_path(out_dir, "part-00000")).exists()
    assert shards.list_shards(fs, out_dir) == []
    with pytest.raises(shards.ShardError, match="no manifest, shard is incomplete"):
        shards.read_verified(fs, out_dir, "part-00000")
    shards.remove_temp_files(fs, out_dir)
    if tiny_disk is None:
        monkeypatch.setattr(os, "fsync", real_fsync)
    smaller = docs.slice(0, 400)  # 100 kept, 300 rejected: fits
    write_result(fs, out_dir, "part-00000", "04_quality", smaller.num_rows,
                 StageResult.split(smaller, reasons[:400]), "h", [], 0.0)
    assert shards.list_shards(fs, out_dir) == ["part-00000"]
    assert shards.read_verified(fs, out_dir, "part-00000").num_rows == 100
    assert shards.read_verified(fs, out_dir, "part-00000", which="rejected").num_rows == 300
    assert shards.verify_stage_dir(fs, out_dir) == []
