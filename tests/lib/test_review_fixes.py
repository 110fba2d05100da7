"""Manifests that are valid JSON but not manifests: a ShardError naming the file, never a crash.

``verify`` lists them as problems (exit 1); ``inspect`` fails with a one-line error (exit 2)
instead of silently under-counting the stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from crawl2model.cli import main
from pipeline_lib import shards
from pipeline_lib.stage import StageResult, write_result
from tests.e2e.support import run_cli

STAGE = "03_langid"


def _run(tmp: Path) -> Path:
    """A real two-shard stage written by the runner's own writer."""
    fs = shards.filesystem(str(tmp))
    table = pa.table({"id": ["a", "b", "c"], "url": ["u1", "u2", "u3"], "text": ["x", "y", "z"]})
    for i in range(2):
        write_result(fs, str(tmp / "run" / STAGE), shards.shard_name(i), STAGE, 3,
                     StageResult.keep_all(table), "h", [], 0.0)
    return tmp / "run"


def _good_entry(run: Path) -> dict:
    return json.loads(Path(shards.manifest_path(str(run / STAGE), "part-00000")).read_text())["files"]["kept"]


BAD_MANIFESTS = {
    "list": lambda entry: [],
    "empty_object": lambda entry: {},
    "null": lambda entry: None,
    "number": lambda entry: 3,
    "files_is_a_list": lambda entry: {"files": [], "counters": {}},
    "entry_not_an_object": lambda entry: {"files": {"kept": "part-00001.parquet"}, "counters": {}},
    "entry_without_sha256": lambda entry: {"files": {"kept": {"path": entry["path"], "rows": 3}}, "counters": {}},
    "rows_is_a_string": lambda entry: {"files": {"kept": {**entry, "rows": "3"}}, "counters": {}},
    "no_counters": lambda entry: {"files": {"kept": entry}},
    "counters_is_a_list": lambda entry: {"files": {"kept": entry}, "counters": []},
}


@pytest.mark.parametrize("kind", sorted(BAD_MANIFESTS))
def test_wrongly_shaped_manifest_is_a_shard_error_a_verify_problem_and_an_inspect_error(tmp_path, capsys, kind):
    run = _run(tmp_path)
    victim = Path(shards.manifest_path(str(run / STAGE), "part-00001"))
    victim.write_text(json.dumps(BAD_MANIFESTS[kind](_good_entry(run))))
    fs = shards.filesystem(str(run))

    with pytest.raises(shards.ShardError, match="not a valid manifest") as err:
        shards.load_manifest(fs, str(run / STAGE), "part-00001")
    assert str(victim) in str(err.value)

    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert out.count("not a valid manifest") == 1 and f"{victim}: not a valid manifest" in out

    assert main(["inspect", str(run)]) == 2
    captured = capsys.readouterr()
    assert f"{victim}: not a valid manifest" in captured.err and captured.out == ""


def test_real_manifests_including_dedup_clusters_still_load_and_verify(tmp_path, capsys):
    run = _run(tmp_path)
    fs = shards.filesystem(str(run))
    clusters_dir = str(run / "05_dedup" / "_clusters")
    table = pa.table({"row": pa.array([0], pa.int64())})
    files = {"part-00000": shards.write_table_file(fs, clusters_dir, "part-00000.parquet", table),
             "part-00001": shards.write_table_file(fs, clusters_dir, "part-00001.parquet", table.slice(0, 0))}
    shards.write_manifest(fs, clusters_dir, "clusters", shards.build_manifest(
        stage="dedup_clusters", name="clusters", files=files, schema=table.schema,
        counters={"rows_in": 6, "kept": 5, "rejected": 1}, seconds=0.0, config_hash="h", inputs=[],
        extra={"sources": ["x"]}))
    assert shards.load_manifest(fs, clusters_dir, "clusters")["files"].keys() == files.keys()
    assert main(["verify", str(run)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(run), "--json"]) == 0
    stages = json.loads(capsys.readouterr().out)["stages"]
    assert [(s["stage"], s["shards"], s["rows_in"], s["kept"]) for s in stages] == [(STAGE, 2, 6, 6)]


def test_wrongly_shaped_manifest_via_the_real_cli_has_no_traceback(tmp_path):
    run = _run(tmp_path)
    victim = Path(shards.manifest_path(str(run / STAGE), "part-00001"))
    victim.write_text("[]")
    verify = run_cli(["verify", str(run)], tmp_path, timeout=120)
    assert verify.returncode == 1 and f"{victim}: not a valid manifest" in verify.stdout
    inspect = run_cli(["inspect", str(run)], tmp_path, timeout=120)
    assert inspect.returncode == 2 and f"{victim}: not a valid manifest" in inspect.stderr
    assert "Traceback" not in verify.stderr + inspect.stderr


def test_inspect_and_verify_read_a_folder_of_shards_and_point_from_a_parent_to_its_run_dirs(tmp_path, capsys):
    run = _run(tmp_path / "runs" / "small")  # tmp/runs/small/run/03_langid
    stage_dir = str(run / STAGE)
    # A folder of shards itself (what ingest-warc --out writes): before, "no shards under" it.
    assert main(["inspect", stage_dir, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["stages"]
    assert (row["stage"], row["shards"], row["kept"]) == (STAGE, 2, 6)
    assert main(["verify", stage_dir]) == 0
    capsys.readouterr()
    Path(stage_dir, "part-00001.parquet").write_bytes(b"flipped")
    assert main(["verify", stage_dir]) == 1
    assert "part-00001" in capsys.readouterr().out
    # One level too high: the error names the run dirs below.
    assert main(["inspect", str(tmp_path / "runs")]) == 1
    assert "run dirs below it: small/run" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "runs" / "small")]) == 1
    assert "run dirs below it: run" in capsys.readouterr().err


def test_verify_ignores_a_manifest_write_in_flight_and_a_shard_being_rewritten(tmp_path, capsys, monkeypatch):
    run = _run(tmp_path)
    fs = shards.filesystem(str(run))
    stage = str(run / STAGE)
    # The temp file a manifest write leaves while in flight (or when killed): not a manifest.
    Path(stage, "_manifests", ".tmp-" + "0" * 32 + "-part-00002.manifest.json").write_text("")
    assert main(["verify", str(run)]) == 0
    capsys.readouterr()
    # A rewrite between the listing and the checks: the data changes, then the manifest does.
    good = shards.load_manifest(fs, stage, "part-00001")
    real_read = shards.read_bytes

    def rewritten_meanwhile(fs_, path):
        data = real_read(fs_, path)
        if path.endswith("part-00001.parquet"):
            shards.write_manifest(fs, stage, "part-00001", {**good, "seconds": 1.5})  # the new manifest lands
            return data[:-1] + b"x"  # what the reader saw: the old manifest's file half replaced
        return data

    monkeypatch.setattr(shards, "read_bytes", rewritten_meanwhile)
    assert shards.verify_stage_dir(fs, stage) == []
    monkeypatch.setattr(shards, "read_bytes", real_read)
    Path(stage, "part-00001.parquet").write_bytes(b"flipped")  # a real problem is still reported
    assert any("part-00001.parquet: checksum mismatch" in p for p in shards.verify_stage_dir(fs, stage))
