"""``crawl2model run``: the whole DAG on the embedded Prefect (or whichever PREFECT_API_URL points at)."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the whole pipeline on one partition")
    p.add_argument("--config", required=True, help="pipeline YAML (e.g. configs/small.yaml)")
    p.add_argument("--run-dir", help="explicit run dir (default: <data_root>/<name>/<partition> from the config)")
    p.add_argument("--partition", help="override run.partition (a date or crawl id)")
    p.add_argument("--data-root", help="override run.data_root (local path or fsspec URL)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pipeline_lib.config import load_config, run_overrides

    # A bad config fails here, before Prefect starts.
    cfg = load_config(args.config, run_overrides(args.partition, args.data_root))
    if args.run_dir:
        cfg = cfg.with_run_dir(args.run_dir)
    from pipeline_lib.pipeline import check_source_state

    check_source_state(cfg)  # a run dir this config contradicts is refused here, in one line
    print(f"crawl2model: running {args.config} (partition {cfg.run.partition})", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    from pipeline_lib import workers

    # Worker processes spawn and import the stages while Prefect is imported and the run starts.
    workers.warm_up(cfg)
    try:
        _embedded_server_in_its_own_session()
        from flows.pipeline import pipeline

        # The partition is passed explicitly so the flow run is named after it in the UI.
        result = pipeline(config_path=args.config, partition=cfg.run.partition, data_root=args.data_root,
                          run_dir=args.run_dir)
    finally:
        workers.shutdown()  # the flow shuts the pool down itself; this covers a failure before it could
    from pipeline_lib import report

    run_dir = result["run_dir"]
    print(report.funnel_text(result["funnel"]))  # the funnel the flow just published
    print(f"\ndone in {time.perf_counter() - t0:.1f}s; outputs in {run_dir}")
    train = result.get("train") or {}
    if train.get("checkpoint"):
        print(f"checkpoint: {train['checkpoint']}")
        import shlex

        # Quoted for a shell: a run dir with spaces was pasted back as two arguments.
        print(f'try: {shlex.quote(own_command())} sample {shlex.quote(train["checkpoint"])} "The garden"')
    # Every stage ran on what could be read; a whole input file that could not be is named again
    # here, after the funnel, and the exit status says the partition is not complete.
    failures = report_failures(result)
    return 1 if failures else 0


def report_failures(result: dict) -> list[str]:
    from pipeline_lib.pipeline import run_failures

    lines = run_failures(result)
    if lines:
        print("", file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
    return lines


def own_command() -> str:
    """How to call this CLI from the current shell: ``crawl2model`` when PATH finds this one, else its
    path (``.venv/bin/crawl2model`` after ``make run``, whose venv is not activated)."""
    import os
    import shutil

    script = os.path.join(os.path.dirname(sys.executable), "crawl2model")
    if not os.path.exists(script):
        return "crawl2model"
    found = shutil.which("crawl2model")
    if found and os.path.samefile(found, script):
        return "crawl2model"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else script


def _embedded_server_in_its_own_session() -> None:
    """Start Prefect's temporary server (no PREFECT_API_URL) outside this process group, bound to
    this process's life. A Ctrl-C in the terminal reaches the whole group: the server died with the
    run, so Prefect could not record the run as crashed and retried for over a minute, then spent
    minutes more trying to deliver the run's last logs. Now the server outlives the interrupt, the
    crash is recorded, and the CLI stops the server itself (crawl2model.cli._exit_now); if the CLI
    dies any other way (SIGKILL, a hangup, the OOM killer), the kernel sends the server SIGTERM
    (Linux's parent-death signal). Where that signal is not available, nothing changes."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        return
    import ctypes
    import ctypes.util
    import signal
    import subprocess
    import types

    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the server stays in this group, as Prefect starts it
        return
    import prefect.server.api.server as server

    if getattr(server.subprocess, "own_session", False):
        return
    parent = os.getpid()

    def die_with_parent() -> None:  # in the child, between fork and exec: nothing but two calls
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    class Popen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("preexec_fn", die_with_parent)
            super().__init__(*args, **kwargs)

    # Only that module's view of subprocess changes (it starts nothing but the server, from the
    # main thread, whose end is what the parent-death signal follows).
    server.subprocess = types.SimpleNamespace(**{**vars(subprocess), "Popen": Popen, "own_session": True})
