"""Run summaries built from manifests alone: the per-stage funnel and its renderings.

Everything here reads only manifest JSON (never the data), so inspecting a run of any size is
cheap and works on an object store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline_lib import shards
from pipeline_lib.schema import STAGES


def funnel(fs, run_dir: str) -> list[dict[str, Any]]:
    """One row per stage that has shards: rows in, kept, rejected, reasons, counters, seconds.

    Only the stages of the run's own chain (its config.yaml, as its last run left it): a folder
    left by an earlier run of a stage the config now skips was shown as if it had run, and the
    counts no longer chained (stale_stages names such folders).
    """
    chain = _chain(fs, run_dir)
    rows = []
    for stage in STAGES:
        if chain is not None and stage not in chain:
            continue
        row = stage_row(fs, shards.join(run_dir, stage), stage)
        if row is not None:
            rows.append(row)
    return rows


def stale_stages(fs, run_dir: str) -> list[str]:
    """Stage folders with shards that the run's config no longer runs (left by an earlier run)."""
    chain = _chain(fs, run_dir)
    if chain is None:
        return []
    return [s for s in STAGES if s not in chain and shards.list_shards(fs, shards.join(run_dir, s))]


def _chain(fs, run_dir: str) -> list[str] | None:
    """The stage folders of the run dir's own config.yaml; None without one (every folder counts)."""
    from pipeline_lib.config import ConfigError, config_from_yaml
    from pipeline_lib.pipeline import chain_dirs

    path = shards.join(run_dir, "config.yaml")
    try:
        if not shards.exists(fs, path):
            return None
        cfg = config_from_yaml(shards.read_bytes(fs, path).decode("utf-8", "replace"), path, ".", check_files=False)
    except (ConfigError, OSError, ValueError):
        return None  # not ours to judge here: `run` and `verify` say what is wrong with it
    return chain_dirs(cfg)


def stage_row(fs, d: str, stage: str) -> dict[str, Any] | None:
    """The funnel row of one stage folder (any folder of shards, e.g. an ingest-warc output); None
    when it has no shards."""
    names = shards.list_shards(fs, d)
    if not names:
        return None
    totals: Counter[str] = Counter()
    seconds = 0.0
    for name in names:
        manifest = shards.load_manifest(fs, d, name)  # a malformed one raises ShardError naming it
        if manifest is None:  # removed between listing and reading (a rerun is replacing it)
            continue
        totals.update({k: v for k, v in manifest["counters"].items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        secs = manifest.get("seconds", 0.0)
        seconds += secs if isinstance(secs, (int, float)) and not isinstance(secs, bool) else 0.0
    reasons = {k.split(".", 1)[1]: int(v) for k, v in sorted(totals.items()) if k.startswith("rejected.")}
    other = {k: v for k, v in sorted(totals.items())
             if k not in ("rows_in", "kept", "rejected") and not k.startswith("rejected.")}
    return {"stage": stage, "shards": len(names), "rows_in": int(totals["rows_in"]),
            "kept": int(totals["kept"]), "rejected": int(totals["rejected"]),
            "reasons": reasons, "counters": other, "seconds": round(seconds, 3)}


def run_dirs_below(fs, root: str, depth: int = 2) -> list[str]:
    """Run dirs (folders holding a stage folder) up to ``depth`` levels below ``root``, relative to it:
    what `inspect data/runs/small` should have been pointed at."""
    found: list[str] = []
    level = [""]
    for _ in range(depth):
        below = []
        for rel in level:
            try:
                entries = fs.ls(fs._strip_protocol(shards.join(root, rel) if rel else root), detail=True)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                leaf = e["name"].rstrip("/").rsplit("/", 1)[-1]
                if e.get("type") != "directory" or leaf.startswith(("_", ".")):
                    continue
                sub = f"{rel}/{leaf}" if rel else leaf
                if any(fs.exists(fs._strip_protocol(shards.join(root, sub, stage))) for stage in STAGES):
                    found.append(sub)
                else:
                    below.append(sub)
        level = below
    return sorted(found)


def funnel_text(rows: list[dict[str, Any]]) -> str:
    header = f"{'stage':<14}{'shards':>7}{'rows in':>10}{'kept':>10}{'rejected':>10}  reasons"
    out = [header, "-" * len(header)]
    for r in rows:
        reasons = ", ".join(f"{k}={v}" for k, v in r["reasons"].items())
        # What PII scrubbing replaced, per entity type (counts only: values never reach a report).
        scrubbed = {k[4:]: v for k, v in r.get("counters", {}).items() if k.startswith("pii.") and k[4:].isupper()}
        if scrubbed:
            note = "scrubbed: " + ", ".join(f"{k}={v:g}" for k, v in sorted(scrubbed.items()))
            reasons = f"{reasons}; {note}" if reasons else note
        out.append(f"{r['stage']:<14}{r['shards']:>7}{r['rows_in']:>10}{r['kept']:>10}{r['rejected']:>10}  {reasons}")
    return "\n".join(out)


def has_shards(fs, run_dir: str) -> bool:
    """Whether any stage of the run has a complete shard (listing only, no manifest read)."""
    return any(shards.list_shards(fs, shards.join(run_dir, stage)) for stage in STAGES)


def unfinished_shards(fs, run_dir: str) -> list[str]:
    """Stages holding data files without a manifest: shards being written, or whose write was
    killed. Not damage (nothing reads them; a rerun redoes them), but the run is not complete."""
    notes = []
    for stage in STAGES:
        d = shards.join(run_dir, stage)
        extra = sorted(set(shards.list_data_names(fs, d)) - set(shards.list_shards(fs, d)))
        if extra:
            notes.append(f"{d}: {len(extra)} data file(s) without a manifest ({', '.join(extra[:5])}"
                         f"{' ...' if len(extra) > 5 else ''}): being written, or cut short; a rerun redoes them")
    return notes


def verify_run(fs, run_dir: str) -> list[str]:
    """Every problem found re-checking every manifest of every stage of a run."""
    problems = []
    for stage in STAGES:
        d = shards.join(run_dir, stage)
        problems.extend(shards.verify_stage_dir(fs, d))
        for sub in ("_signatures", "_clusters"):
            problems.extend(shards.verify_stage_dir(fs, shards.join(d, sub)))
    return problems
