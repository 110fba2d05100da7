"""The layers only import downwards: pipeline_lib never imports prefect, tasks/flows stay thin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_pipeline_lib_never_imports_prefect_statically():
    offenders = []
    for path in sorted((REPO / "pipeline_lib").rglob("*.py")):
        bad = {m for m in _imported_modules(path) if m == "prefect" or m.startswith("prefect.")
               or m.split(".")[0] in ("flows", "tasks", "crawl2model")}
        if bad:
            offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert offenders == []


def test_importing_every_pipeline_lib_module_loads_no_prefect():
    code = (
        "import importlib, pkgutil, sys, pipeline_lib\n"
        "for m in pkgutil.walk_packages(pipeline_lib.__path__, 'pipeline_lib.'):\n"
        "    importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'prefect' or n.startswith('prefect.'))\n"
        "print(len(loaded)); assert not loaded, loaded[:5]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "0"


def test_tasks_and_flows_do_not_reach_into_each_other_upwards():
    for path in sorted((REPO / "tasks").rglob("*.py")):
        assert not {m for m in _imported_modules(path) if m.split(".")[0] in ("flows", "crawl2model")}, path
