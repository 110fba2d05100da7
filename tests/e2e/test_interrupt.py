"""Ctrl-C and SIGTERM on `crawl2model run` with the embedded Prefect server (the README's default).

A Ctrl-C reaches the terminal's whole process group: the temporary server died with the run, and
the CLI then retried the dead server for minutes before exiting 1 with tracebacks. A SIGTERM to
the CLI alone (a supervisor, `docker stop`) left the server running with no parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.e2e.support import REPO, cli_env, write_small_config

pytestmark = pytest.mark.slow


def _start_and_signal(tmp_path, sig: int, whole_group: bool):
    config = write_small_config(tmp_path)

    def default_sigint():  # a terminal's foreground job: SIGINT at its default
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "crawl2model.cli", "run", "--config", str(config)], cwd=REPO,
                            env=cli_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.strip().startswith("urlfilter"):  # the server is up and the stages are running
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(600):
        proc.kill()
        pytest.fail("the run never reached its second stage:\n" + "".join(lines[-20:]))
    children = [p for p in psutil.Process(proc.pid).children(recursive=True)]
    assert any("create_app" in " ".join(p.cmdline()) for p in children), "no embedded server to test with"
    sent = time.monotonic()
    if whole_group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    rc = proc.wait(120)
    took = time.monotonic() - sent
    reader.join(10)
    gone, alive = psutil.wait_procs(children, timeout=15)
    return rc, took, "".join(lines), alive


def test_ctrl_c_ends_the_run_at_once_with_130(tmp_path):
    rc, took, stderr, alive = _start_and_signal(tmp_path, signal.SIGINT, whole_group=True)
    assert rc == 130 and "interrupted" in stderr, stderr[-3000:]
    assert took < 60, f"took {took:.0f}s"  # was ~300 s, exit 1
    assert "Traceback" not in stderr, stderr[-3000:]
    assert not alive, [p.cmdline() for p in alive]


def test_sigterm_to_the_cli_alone_stops_the_embedded_server(tmp_path):
    rc, took, stderr, alive = _start_and_signal(tmp_path, signal.SIGTERM, whole_group=False)
    assert rc == 143 and "interrupted" in stderr, stderr[-3000:]
    assert took < 60, f"took {took:.0f}s"
    assert not alive, [p.cmdline() for p in alive]  # the server was left with no parent


def test_sigkill_of_the_whole_group_takes_the_embedded_server_with_it(tmp_path):
    # The server runs in its own session (so that a Ctrl-C leaves it to record the crash): the
    # kernel's parent-death signal is what ends it when the CLI cannot (kill -9, a hangup, OOM).
    rc, _took, _stderr, alive = _start_and_signal(tmp_path, signal.SIGKILL, whole_group=True)
    assert rc == -signal.SIGKILL
    assert not alive, [p.cmdline() for p in alive]


def test_sigterm_does_not_wait_for_the_shards_in_flight(tmp_path):
    # The workers get no SIGTERM (only the CLI does): shutting the pool down waited for every
    # running shard, longer than `docker stop` grants before its SIGKILL.
    proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.interrupt_probe"], cwd=REPO, env=cli_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline().strip() == "shard running"
    time.sleep(3)  # the shard is in a worker process now
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    assert rc == 143 and time.monotonic() - sent < 10, (rc, time.monotonic() - sent)
    assert "interrupted" in proc.stderr.read()
