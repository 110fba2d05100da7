"""Kill and resume: SIGKILL the whole pipeline at random moments, resume it, compare with a clean run.

Each trial runs ``crawl2model run`` in its own process group, kills the group (CLI, spawned shard
workers, extractor helpers, the embedded Prefect server) either when a chosen stage folder gets its
first manifest or after a random delay, then runs the same command again. The resumed run must
match an uninterrupted run of the same config: the same document ids and texts after PII, the same
tokens; every shard finished before the kill is left untouched (not written twice); no temporary
file is listed by a manifest or left behind; ``crawl2model verify`` passes.

    KILL_RESUME_TRIALS=5 .venv/bin/pytest tests/reliability/test_kill_resume.py -m slow   # full mode (CI: 2)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pytest
import yaml

from pipeline_lib import shards
from tests.e2e.support import REPO, cli_env, write_small_config

TRIALS = int(os.environ.get("KILL_RESUME_TRIALS", "2"))  # CI default; 5+ for the full proof
SEED = int(os.environ.get("KILL_RESUME_SEED", "20261129"))
RUN_TIMEOUT = 900
# Kill points: the first manifest of a stage folder, or a delay after start (seconds).
KILL_POINTS = [("manifest", "02_extract"), ("manifest", "05_dedup/_signatures"), ("delay", None),
               ("manifest", "06_pii"), ("manifest", "00_crawl"), ("manifest", "04_quality"),
               ("manifest", "07_tokens"), ("delay", None)]

pytestmark = pytest.mark.slow


def patient_env(tmp: Path) -> dict[str, str]:
    """The CLI's test environment, with room for the embedded Prefect server to start on a busy machine."""
    env = cli_env(tmp)
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    return env


def run_cli(args: list[str], tmp: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawl2model.cli", *args], cwd=REPO, env=patient_env(tmp),
                          capture_output=True, text=True, timeout=timeout)


def run_dir_of(data_root: Path) -> Path:
    return data_root / "small" / "sample"


@pytest.fixture(scope="module")
def kill_config(tmp_path_factory) -> dict:
    """One config (one fixed site port: document ids embed the URL) shared by every trial."""
    tmp = tmp_path_factory.mktemp("kill-resume")
    config = write_small_config(tmp)
    data = yaml.safe_load(config.read_text())
    data["train"]["max_steps"] = 2  # training is not under test here; keep each run short
    config.write_text(yaml.safe_dump(data))
    return {"tmp": tmp, "config": config}


@pytest.fixture(scope="module")
def reference(kill_config) -> dict:
    tmp = kill_config["tmp"]
    started = time.monotonic()
    proc = run_cli(["run", "--config", str(kill_config["config"]), "--data-root", str(tmp / "reference")], tmp,
                   timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {"run_dir": run_dir_of(tmp / "reference"), "seconds": time.monotonic() - started}


def _manifests(run_dir: Path) -> dict[str, bytes]:
    """Finished manifests by path. A ``.tmp-*`` file is a write the kill cut short, not a manifest.

    Training (08_train) resumes from its checkpoints by design; the shard stages are under test.
    """
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*.manifest.json")
            if not p.name.startswith(".tmp-") and not str(p.relative_to(run_dir)).startswith("08_train")}


def _listed_files(run_dir: Path, manifests: dict[str, bytes]) -> dict[str, tuple[int, int, int]]:
    """(inode, mtime_ns, size) of every data file a manifest lists: a rewrite changes the inode."""
    out = {}
    for rel, blob in manifests.items():
        stage_dir = (run_dir / rel).parent
        if stage_dir.name == shards.MANIFEST_DIR:  # <stage>/_manifests/part-N.manifest.json
            stage_dir = stage_dir.parent
        for entry in json.loads(blob).get("files", {}).values():
            p = stage_dir / entry["path"]
            if p.exists():
                st = p.stat()
                out[str(p.relative_to(run_dir))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run's process group and any descendant that left it (found before the kill)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=30)


def _run_and_kill(config: Path, data_root: Path, tmp: Path, point: tuple[str, str | None], delay: float) -> dict:
    cmd = [sys.executable, "-m", "crawl2model.cli", "run", "--config", str(config), "--data-root", str(data_root)]
    log = open(tmp / f"{data_root.name}.killed.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=patient_env(tmp), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    run_dir = run_dir_of(data_root)
    started = time.monotonic()
    kind, stage = point
    fired = None
    try:
        while proc.poll() is None and time.monotonic() - started < RUN_TIMEOUT:
            if kind == "delay" and time.monotonic() - started >= delay:
                fired = f"after {delay:.1f}s"
            elif kind == "manifest" and list((run_dir / stage / "_manifests").glob("part-*.manifest.json")):
                fired = f"first manifest in {stage}"
            if fired:
                _kill_group(proc)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        log.close()
    return {"fired": fired, "returncode": proc.returncode, "at": time.monotonic() - started}


def _read_stage(run_dir: Path, stage: str, columns: list[str]) -> dict[str, list]:
    """Every shard of a stage, each verified against its manifest (what a consumer would read)."""
    fs = shards.filesystem(str(run_dir))
    d = str(run_dir / stage)
    tables = [shards.read_verified(fs, d, name, columns=columns) for name in shards.list_shards(fs, d)]
    return pa.concat_tables(tables).to_pydict()


def _docs_after_pii(run_dir: Path) -> dict[str, str]:
    t = _read_stage(run_dir, "06_pii", ["id", "text"])
    assert len(set(t["id"])) == len(t["id"]), "a document appears twice after PII"
    return dict(zip(t["id"], t["text"]))


def _tokens(run_dir: Path) -> tuple[int, str]:
    t = _read_stage(run_dir, "07_tokens", ["id", "tokens", "n_tokens"])
    by_id = sorted(zip(t["id"], t["tokens"]))
    digest = hashlib.sha256(json.dumps(by_id).encode()).hexdigest()
    return sum(t["n_tokens"]), digest


def test_kill_and_resume_matches_an_uninterrupted_run(kill_config, reference):
    tmp, config = kill_config["tmp"], kill_config["config"]
    rng = random.Random(SEED)
    ref_docs = _docs_after_pii(reference["run_dir"])
    ref_tokens = _tokens(reference["run_dir"])
    assert ref_docs and ref_tokens[0] > 0
    report = []
    for trial in range(TRIALS):
        point = KILL_POINTS[trial % len(KILL_POINTS)]
        delay = rng.uniform(0.3, 0.9) * reference["seconds"]
        data_root = tmp / f"trial-{trial}"
        killed = _run_and_kill(config, data_root, tmp, point, delay)
        run_dir = run_dir_of(data_root)
        before = _manifests(run_dir) if run_dir.exists() else {}
        files_before = _listed_files(run_dir, before) if before else {}
        # A temporary file is never what a manifest points at.
        temps = [p for p in run_dir.rglob(".tmp-*")] if run_dir.exists() else []
        for blob in before.values():
            for entry in json.loads(blob).get("files", {}).values():
                assert not Path(entry["path"]).name.startswith(".tmp-"), entry

        proc = run_cli(["run", "--config", str(config), "--data-root", str(data_root)], tmp, timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, (trial, killed, proc.stdout[-3000:] + proc.stderr[-6000:])

        after = _manifests(run_dir)
        rewritten = [rel for rel, blob in before.items() if after.get(rel) != blob]
        assert not rewritten, f"trial {trial} ({killed['fired']}): shards finished before the kill were rewritten: {rewritten}"
        files_after = _listed_files(run_dir, before)
        touched = [p for p, st in files_before.items() if files_after.get(p) != st]
        assert not touched, f"trial {trial}: data files of finished shards changed: {touched}"
        leftovers = [str(p) for p in run_dir.rglob(".tmp-*") if "08_train" not in str(p)]
        assert not leftovers, f"trial {trial}: temporary files left after resume: {leftovers}"
        verify = run_cli(["verify", str(run_dir)], tmp, timeout=300)
        assert verify.returncode == 0, verify.stdout[-3000:]

        assert _docs_after_pii(run_dir) == ref_docs, f"trial {trial} ({killed['fired']}): documents after PII differ"
        assert _tokens(run_dir) == ref_tokens, f"trial {trial} ({killed['fired']}): tokens differ"
        report.append({"trial": trial, **killed, "shards_done_at_kill": len(before), "temp_files_at_kill": len(temps)})
    print(json.dumps(report, indent=1))
    # The kill points actually interrupted work (not all after a finished run).
    assert any(r["fired"] and r["returncode"] == -signal.SIGKILL for r in report), report
