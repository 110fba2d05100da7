"""Shard I/O and the stage runner on small Arrow tables in a temp dir."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pytest

from pipeline_lib import shards
from pipeline_lib.config import parse_config
from pipeline_lib.stage import ContractError, Stage, StageResult, check_result, run_shard, write_result


def _docs(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(start, start + n)],
                     "url": [f"http://h/{i}" for i in range(start, start + n)],
                     "text": ["x" * (i % 7) for i in range(start, start + n)]})


def _write_input(fs, d, name, table):
    write_result(fs, d, name, "00_test", table.num_rows, StageResult.keep_all(table), "h", [], 0.0)


class DropShort(Stage):
    name = "dropshort"
    section = "quality"

    def process(self, table):
        reasons = [None if len(t) >= 3 else "too_short" for t in table.column("text").to_pylist()]
        return StageResult.split(table, reasons, {"dropshort.checked": table.num_rows})


class LosesRows(DropShort):
    def process(self, table):
        return StageResult.keep_all(table.slice(1))


def test_shard_names_are_deterministic():
    assert shards.shard_name(0) == "part-00000" and shards.shard_name(123) == "part-00123"


def test_shards_list_in_number_order_past_five_digits(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    d = str(tmp_path / "00_test")
    for index in (100_000, 2, 500_000, 9_999, 20_000):
        _write_input(fs, d, shards.shard_name(index), _docs(1))
    # as strings, part-100000 would come before part-20000
    assert shards.list_shards(fs, d) == ["part-00002", "part-09999", "part-20000", "part-100000", "part-500000"]


def test_write_read_roundtrip_and_manifest(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    d = str(tmp_path / "00_test")
    _write_input(fs, d, "part-00000", _docs(10))
    m = shards.load_manifest(fs, d, "part-00000")
    assert m["rows"] == 10 and m["files"]["kept"]["bytes"] == os.path.getsize(f"{d}/part-00000.parquet")
    assert {"sha256", "rows", "bytes"} <= set(m["files"]["kept"])
    assert "id: string" in m["schema"] and m["config_hash"] == "h" and m["code_version"]
    assert shards.read_verified(fs, d, "part-00000").equals(_docs(10))
    assert shards.list_shards(fs, d) == ["part-00000"]
    assert not [f for f in os.listdir(d) if f.startswith(".tmp-")]


def test_equal_tables_give_byte_identical_files():
    assert shards.table_to_parquet_bytes(_docs(50)) == shards.table_to_parquet_bytes(_docs(50))


def test_equal_tables_give_identical_files_whatever_their_buffers():
    # 8 values of 1,020 bytes: the mean is under the long-text mark (1,024), but with offsets and a
    # validity bitmap the buffers pass it; the writer's choice must follow the values only.
    values = ["x" * 1020] * 7 + ["y" * 1020]
    plain = pa.table({"html": pa.array(values)})
    with_bitmap = pa.table({"html": pa.array(values + [None]).slice(0, len(values))})
    assert plain.equals(with_bitmap) and plain.column(0).nbytes != with_bitmap.column(0).nbytes
    assert shards.table_to_parquet_bytes(plain) == shards.table_to_parquet_bytes(with_bitmap)
    # Long texts are written without a dictionary, short ones with.
    long_text = pa.table({"text": ["z" * 5000, "z" * 5000], "lang": ["en", "en"]})
    assert shards._dictionary_columns(long_text) == ["lang"]


def test_flipped_byte_is_caught_naming_file_and_checksums(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    d = str(tmp_path / "s")
    _write_input(fs, d, "part-00000", _docs(20))
    path = f"{d}/part-00000.parquet"
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(shards.ShardError) as e:
        shards.read_verified(fs, d, "part-00000")
    m = shards.load_manifest(fs, d, "part-00000")
    assert path in str(e.value) and m["files"]["kept"]["sha256"] in str(e.value)
    assert shards.sha256_bytes(bytes(data)) in str(e.value)
    assert any("checksum mismatch" in p for p in shards.verify_stage_dir(fs, d))


def test_truncated_shard_and_missing_manifest(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    d = str(tmp_path / "s")
    _write_input(fs, d, "part-00000", _docs(20))
    path = f"{d}/part-00000.parquet"
    open(path, "r+b").truncate(100)
    with pytest.raises(shards.ShardError, match="checksum mismatch"):
        shards.read_verified(fs, d, "part-00000")
    # A data file without a manifest is an unfinished shard: never listed, never read.
    open(f"{d}/part-00001.parquet", "wb").write(shards.table_to_parquet_bytes(_docs(3)))
    assert shards.list_shards(fs, d) == ["part-00000"]
    with pytest.raises(shards.ShardError, match="incomplete"):
        shards.read_verified(fs, d, "part-00001")


def test_runner_conserves_rows_counts_reasons_and_skips_when_done(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    cfg = parse_config({})
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    s1 = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    assert s1["rows_in"] == 14 and s1["kept"] + s1["rejected"] == 14 and not s1["skipped"]
    rejected = shards.read_verified(fs, out, "part-00000", which="rejected")
    assert set(rejected.column("reject_reason").to_pylist()) == {"too_short"}
    m = shards.load_manifest(fs, out, "part-00000")
    assert m["counters"]["rejected.too_short"] == s1["rejected"] and m["counters"]["dropshort.checked"] == 14
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
    s2 = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    assert s2["skipped"] and s2["kept"] == s1["kept"]
    assert before == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}


@pytest.mark.parametrize("damage", ["truncate", "remove_rejected"])
def test_a_rerun_redoes_a_shard_whose_file_was_cut_short_or_lost(tmp_path, damage):
    """Every rerun skipped the damaged shard (its manifest matched) and failed reading it in the
    next stage; the sizes the manifest records now tell it apart."""
    fs = shards.filesystem(str(tmp_path))
    cfg = parse_config({})
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    run_shard(DropShort(cfg), fs, src, out, "part-00000")
    if damage == "truncate":
        open(f"{out}/part-00000.parquet", "r+b").truncate(100)
    else:
        os.remove(shards.rejected_path(out, "part-00000"))
    again = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    assert not again["skipped"]
    assert shards.read_verified(fs, out, "part-00000").num_rows == again["kept"]
    assert run_shard(DropShort(cfg), fs, src, out, "part-00000")["skipped"]


def test_runner_redoes_shard_when_input_or_config_changes(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    run_shard(DropShort(parse_config({})), fs, src, out, "part-00000")
    changed = parse_config({"quality": {"enabled": False}})  # another section hash
    assert not run_shard(DropShort(changed), fs, src, out, "part-00000")["skipped"]
    _write_input(fs, src, "part-00000", _docs(15))
    assert run_shard(DropShort(changed), fs, src, out, "part-00000")["rows_in"] == 15


def test_contract_violations_are_errors(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(5))
    with pytest.raises(ContractError, match="rows_in 5"):
        run_shard(LosesRows(parse_config({})), fs, src, out, "part-00000")
    assert shards.list_shards(fs, out) == []  # nothing half-written looks complete
    t = _docs(2)
    bad = StageResult(t.slice(0, 1), t.slice(1).append_column("reject_reason", pa.array([None], pa.string())))
    with pytest.raises(ContractError, match="without a reason"):
        check_result("x", 2, bad)


def _block(out: str, sub: str) -> None:
    """A plain file where the runner needs the folder ``sub``: a real write failure (FileExistsError /
    NotADirectoryError from the OS), hit after the kept file already sits under its final name."""
    path = os.path.join(out, sub)
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(out, exist_ok=True)
    open(path, "w").write("in the way")


@pytest.mark.parametrize("blocked", [shards.REJECTED_DIR, shards.MANIFEST_DIR])
def test_a_write_failing_after_the_kept_file_leaves_an_incomplete_shard_that_a_rerun_redoes(tmp_path, blocked):
    fs = shards.filesystem(str(tmp_path))
    cfg = parse_config({})
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    _block(out, blocked)
    with pytest.raises(OSError):
        run_shard(DropShort(cfg), fs, src, out, "part-00000")
    kept_path = shards.data_path(out, "part-00000")
    assert os.path.isfile(kept_path), "the failure must come after the kept file is in place"
    assert shards.list_shards(fs, out) == []
    with pytest.raises(shards.ShardError, match="no manifest, shard is incomplete"):
        shards.read_verified(fs, out, "part-00000")
    # The leftover is never trusted: even a damaged copy under the final name is rewritten.
    open(kept_path, "r+b").truncate(10)
    os.remove(os.path.join(out, blocked))
    again = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    assert not again["skipped"] and (again["kept"], again["rejected"]) == (8, 6)
    assert shards.list_shards(fs, out) == ["part-00000"]
    assert shards.read_verified(fs, out, "part-00000").equals(DropShort(cfg).process(_docs(14)).kept)
    assert shards.read_verified(fs, out, "part-00000", which="rejected").num_rows == 6
    assert shards.verify_stage_dir(fs, out) == []


def test_a_failed_redo_does_not_leave_the_old_manifest_vouching_for_new_files(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    cfg = parse_config({})
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    first = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    _write_input(fs, src, "part-00000", _docs(20))  # the input changed: the shard is redone
    _block(out, shards.REJECTED_DIR)
    with pytest.raises(OSError):
        run_shard(DropShort(cfg), fs, src, out, "part-00000")
    # The kept file now holds the new rows; the old manifest must not still call the shard complete.
    assert shards.list_shards(fs, out) == []
    with pytest.raises(shards.ShardError, match="incomplete"):
        shards.read_verified(fs, out, "part-00000")
    # Back to the old input (an upstream redo, a reverted config): not skipped as done, but redone.
    _write_input(fs, src, "part-00000", _docs(14))
    os.remove(os.path.join(out, shards.REJECTED_DIR))
    again = run_shard(DropShort(cfg), fs, src, out, "part-00000")
    assert not again["skipped"] and again["kept"] == first["kept"]
    assert shards.read_verified(fs, out, "part-00000").equals(DropShort(cfg).process(_docs(14)).kept)
    assert shards.verify_stage_dir(fs, out) == []


def test_a_redo_without_rejections_removes_the_previous_rejected_file(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    _write_input(fs, src, "part-00000", _docs(14))
    run_shard(DropShort(parse_config({})), fs, src, out, "part-00000")
    assert os.path.isfile(shards.rejected_path(out, "part-00000"))
    long_docs = _docs(5, start=3).set_column(2, "text", pa.array(["long enough"] * 5))
    _write_input(fs, src, "part-00000", long_docs)
    again = run_shard(DropShort(parse_config({})), fs, src, out, "part-00000")
    assert (again["kept"], again["rejected"]) == (5, 0)
    # A reader of the _rejected/ folder (duckdb, pandas) must not count rows of the old shard.
    assert not os.path.exists(shards.rejected_path(out, "part-00000"))
    assert "rejected" not in shards.load_manifest(fs, out, "part-00000")["files"]


def test_remove_temp_files(tmp_path):
    fs = shards.filesystem(str(tmp_path))
    d = tmp_path / "s"
    d.mkdir()
    (d / ".tmp-abc-part-00000.parquet").write_bytes(b"half")
    assert shards.remove_temp_files(fs, str(d)) == 1 and not list(d.iterdir())


def test_temp_file_cleanup_spares_writes_whose_writer_is_alive(tmp_path):
    """Another run of the partition (or a stage deployment) starting in the same folder used to
    delete a write in flight, failing that run at its rename."""
    import subprocess
    import sys
    import time

    fs = shards.filesystem(str(tmp_path))
    d = tmp_path / "s"
    d.mkdir()
    host = shards._this_host()  # hostname and PID namespace
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            "live": f".tmp-{'a' * 32}~{alive.pid}~{host}~part-00000.parquet",
            "mine": f".tmp-{'b' * 32}~{os.getpid()}~{host}~part-00001.parquet",  # another thread of ours
            "dead": f".tmp-{'c' * 32}~{dead.pid}~{host}~part-00002.parquet",
            "elsewhere_new": f".tmp-{'d' * 32}~1~other-host~part-00003.parquet",
            "elsewhere_old": f".tmp-{'e' * 32}~1~other-host~part-00004.parquet",
        }
        for name in names.values():
            (d / name).write_bytes(b"half")
        old = time.time() - shards.FOREIGN_TEMP_MAX_AGE_S - 60
        os.utime(d / names["elsewhere_old"], (old, old))
        assert shards.remove_temp_files(fs, str(d)) == 2
        assert sorted(os.listdir(d)) == sorted([names["live"], names["mine"], names["elsewhere_new"]])
    finally:
        alive.kill()
        alive.wait()
    assert shards.remove_temp_files(fs, str(d)) == 1  # its writer is gone now
    # Same hostname, another PID namespace (a container on this host): not ours to judge by pid.
    other_ns = f".tmp-{'f' * 32}~{dead.pid}~{host.split('@')[0]}@1~part-00005.parquet"
    (d / other_ns).write_bytes(b"half")
    assert shards.remove_temp_files(fs, str(d)) == 0 and (d / other_ns).exists()
