"""Shard storage: deterministic names, atomic writes, manifests written last, verified reads.

A shard is ``<stage_dir>/part-NNNNN.parquet`` with ``_manifests/part-NNNNN.manifest.json`` and,
for filtering stages, ``_rejected/part-NNNNN.parquet``. The manifest is written after every data
file is in place, so its presence means "this shard is complete". Everything that is not data
lives under a ``_``-prefixed folder, which Arrow, pandas, Spark and DuckDB's hive readers skip:
``pd.read_parquet("06_pii")`` reads exactly the kept documents. Paths are plain strings, local
or any fsspec URL; the same code writes to a laptop disk and to ``s3://``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline_lib import __version__

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_DIR = "_manifests"
REJECTED_DIR = "_rejected"


class ShardError(RuntimeError):
    """A shard that is missing, incomplete or does not match its manifest."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def join(*parts: str) -> str:
    head, *rest = parts
    return "/".join([head.rstrip("/")] + [p.strip("/") for p in rest if p])


def filesystem(path: str, storage_options: dict | None = None) -> fsspec.AbstractFileSystem:
    options = dict(storage_options or {})
    if "://" in path and not path.startswith("file://"):
        # Shards are written by other processes: a cached listing would hide their manifests.
        options.setdefault("use_listings_cache", False)
    fs, _ = fsspec.core.url_to_fs(path, **options)
    return fs


def _strip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs._strip_protocol(path)


# Libraries whose exceptions mean storage could not be reached or refused us (credentials, an
# endpoint): the user's setup, not a damaged file. One list for every caller that tells them apart.
STORAGE_ERROR_MODULES = frozenset({"botocore", "aiobotocore", "s3fs", "gcsfs", "adlfs", "fsspec", "aiohttp",
                                   "google", "azure"})


def is_storage_error(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0] in STORAGE_ERROR_MODULES


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# Mean bytes per value above which a text column is not dictionary-encoded (pages, documents).
_LONG_TEXT_BYTES = 1024


def _dictionary_columns(table: pa.Table) -> list[str]:
    """Every column but long texts: a page-sized value never repeats, and trying the dictionary
    first cost ~15% of writing a page shard."""
    out = []
    for field, column in zip(table.schema, table.columns):
        t = field.type
        text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
        # Mean length of the values themselves (not the buffers, which can differ between equal tables).
        values = column.length() - column.null_count
        long_text = text and values and (pc.sum(pc.binary_length(column)).as_py() or 0) / values > _LONG_TEXT_BYTES
        if not long_text:
            out.append(field.name)
    return out


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    return memoryview(_parquet_buffer(table)).tobytes()


def _parquet_buffer(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    # Fixed writer settings so equal tables give byte-identical files (reruns change nothing).
    # zstd level 1: as small as the default level 3 on HTML and text shards here, ~30% faster to write.
    pq.write_table(table, sink, compression="zstd", compression_level=1, write_statistics=True,
                   use_dictionary=_dictionary_columns(table))
    return sink.getvalue()


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes | memoryview) -> None:
    """Write under a temporary name, then rename, so a reader never sees half a file.

    On object stores (no rename), a single PUT is already all-or-nothing; the manifest written
    last is what marks a shard complete either way.
    """
    path = _strip(fs, path)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if is_local(fs):
        tmp = f"{parent}/{_temp_prefix()}{path.rsplit('/', 1)[1]}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # a failed write (disk full) takes its temp file with it; a kill leaves it
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
    else:
        with fs.open(path, "wb") as f:
            f.write(data)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    with fs.open(_strip(fs, path), "rb") as f:
        return f.read()


def exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.exists(_strip(fs, path))


def remove_if_exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Delete one file if it is there; True when something was deleted."""
    path = _strip(fs, path)
    if not fs.exists(path):
        return False
    try:
        fs.rm(path)
    except FileNotFoundError:  # gone in between
        return False
    return True


def read_json_or_none(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """A small JSON file (marker, metadata); None when it is missing or not valid JSON."""
    if not exists(fs, path):
        return None
    try:
        return json.loads(read_bytes(fs, path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the stage dir
    rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


def manifest_path(stage_dir: str, name: str) -> str:
    return join(stage_dir, MANIFEST_DIR, name + MANIFEST_SUFFIX)


def data_path(stage_dir: str, name: str) -> str:
    return join(stage_dir, name + ".parquet")


def rejected_path(stage_dir: str, name: str) -> str:
    return join(stage_dir, REJECTED_DIR, name + ".parquet")


def write_table_file(fs, stage_dir: str, rel_path: str, table: pa.Table) -> FileEntry:
    data = memoryview(_parquet_buffer(table))  # written and hashed in place: a page shard is tens of MB
    write_bytes_atomic(fs, join(stage_dir, rel_path), data)
    return FileEntry(rel_path, table.num_rows, data.nbytes, sha256_bytes(data))


def write_manifest(fs, stage_dir: str, name: str, manifest: dict[str, Any]) -> None:
    blob = json.dumps(manifest, indent=2, sort_keys=True).encode()
    write_bytes_atomic(fs, manifest_path(stage_dir, name), blob)


def build_manifest(
    *,
    stage: str,
    name: str,
    files: dict[str, FileEntry],
    schema: pa.Schema,
    counters: dict[str, int],
    seconds: float,
    config_hash: str,
    inputs: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "stage": stage,
        "shard": name,
        "files": {k: v.to_dict() for k, v in files.items()},
        "rows": files["kept"].rows if "kept" in files else 0,
        "schema": schema.to_string(show_schema_metadata=False),
        "counters": dict(sorted(counters.items())),
        "seconds": round(seconds, 4),
        "code_version": __version__,
        "config_hash": config_hash,
        "inputs": inputs,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }


def load_manifest(fs, stage_dir: str, name: str) -> dict[str, Any] | None:
    path = manifest_path(stage_dir, name)
    try:
        raw = read_bytes(fs, path)
    except (FileNotFoundError, NotADirectoryError):  # incomplete shard (or removed since it was listed)
        return None
    return _parse_manifest(path, raw)


def load_manifests(fs, stage_dir: str, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """``load_manifest`` for many shards; from an object store, 16 at a time (one request each)."""
    if is_local(fs) or len(names) <= 1:
        return {n: load_manifest(fs, stage_dir, n) for n in names}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        return dict(zip(names, pool.map(lambda n: load_manifest(fs, stage_dir, n), names)))


def _parse_manifest(path: str, raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: manifest is not valid JSON ({e})") from None
    problem = _manifest_shape_problem(manifest)
    if problem:
        raise ShardError(f"{path}: not a valid manifest ({problem})")
    return manifest


def _manifest_shape_problem(manifest: Any) -> str | None:
    """What is wrong with the structure every manifest has (see ``build_manifest``), or None.

    Shard manifests and global outputs (dedup's ``_clusters``) alike: a ``files`` object whose
    entries each name a ``path``, ``sha256`` and ``rows``, and a ``counters`` object.
    """
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "no 'files' object" if files is None else "'files' is not an object"
    for which, entry in files.items():
        if not isinstance(entry, dict):
            return f"files.{which} is not an object"
        for key, kind in (("path", str), ("sha256", str), ("rows", int)):
            value = entry.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                return f"files.{which}.{key} is missing or not a {kind.__name__}"
        if entry["rows"] < 0:
            return f"files.{which}.rows is negative"
    if not isinstance(manifest.get("counters"), dict):
        return "no 'counters' object" if manifest.get("counters") is None else "'counters' is not an object"
    return None


def list_manifests(fs, stage_dir: str) -> list[str]:
    """Names of everything in a stage folder that has a manifest (shards and global outputs)."""
    base = _strip(fs, join(stage_dir, MANIFEST_DIR))
    if not fs.exists(base):
        return []
    leaves = (p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    # A ``.tmp-*`` manifest is a write in flight (or killed), not a manifest.
    return sorted((leaf[: -len(MANIFEST_SUFFIX)] for leaf in leaves
                   if leaf.endswith(MANIFEST_SUFFIX) and not leaf.startswith(".tmp-")), key=_name_order)


def _name_order(name: str) -> tuple[str, int, str]:
    """part-9999 before part-10000: shard numbers compare as numbers (they outgrow 5 digits)."""
    head, sep, tail = name.rpartition("-")
    return (head, int(tail), name) if sep and tail.isdigit() else (name, -1, name)


def list_shards(fs, stage_dir: str) -> list[str]:
    """Names of the complete shards (those with a manifest) of a stage, sorted."""
    return [n for n in list_manifests(fs, stage_dir) if n.startswith("part-")]


def list_data_names(fs, stage_dir: str) -> list[str]:
    """Names of the shards whose data file is in the stage folder, complete or not (a shard being
    written, or whose write was killed, has its data file and no manifest yet)."""
    base = _strip(fs, stage_dir)
    if not fs.exists(base):
        return []
    leaves = (p.rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    return sorted((leaf[: -len(".parquet")] for leaf in leaves if leaf.startswith("part-") and leaf.endswith(".parquet")),
                  key=_name_order)


def read_verified(fs, stage_dir: str, name: str, which: str = "kept", columns: list[str] | None = None,
                  manifest: dict[str, Any] | None = None) -> pa.Table:
    """Read one file of a shard after checking it against the manifest: checksum and row count.

    ``manifest``: the shard's manifest when the caller has already loaded it (saves a read).
    """
    if manifest is None:
        manifest = load_manifest(fs, stage_dir, name)
    if manifest is None:
        raise ShardError(f"{manifest_path(stage_dir, name)}: no manifest, shard is incomplete")
    entry = manifest["files"].get(which)
    if entry is None:
        raise ShardError(f"{manifest_path(stage_dir, name)}: manifest lists no '{which}' file")
    path = join(stage_dir, entry["path"])
    try:
        data = read_bytes(fs, path)
    except FileNotFoundError:
        raise ShardError(f"{path}: listed in its manifest but missing") from None
    actual = sha256_bytes(data)
    if actual != entry["sha256"]:
        raise ShardError(f"{path}: checksum mismatch: manifest sha256 {entry['sha256']}, file sha256 {actual} "
                         f"({len(data)} bytes, manifest says {entry['bytes']}); to redo the shard, remove "
                         f"{manifest_path(stage_dir, name)} and rerun")
    table = pq.read_table(io.BytesIO(data), columns=columns)
    if table.num_rows != entry["rows"]:
        raise ShardError(f"{path}: row count {table.num_rows} does not match manifest ({entry['rows']})")
    return table


def verify_stage_dir(fs, stage_dir: str) -> list[str]:
    """Re-check every shard of a stage; returns a list of problems (empty = all good).

    A shard found wrong is looked at once more: when its manifest changed or went meanwhile, a run
    is rewriting it (the old manifest goes first, the new one comes last) and that is no problem."""
    problems = []
    for name in list_manifests(fs, stage_dir):
        try:
            manifest = load_manifest(fs, stage_dir, name)
        except ShardError as e:
            problems.append(str(e))
            continue
        if manifest is None:  # removed since the listing: being rewritten
            continue
        found = _shard_problems(fs, stage_dir, manifest)
        if found:
            try:
                still = load_manifest(fs, stage_dir, name) == manifest
            except ShardError:  # the rewrite's new manifest is as bad as it looks: report what we saw
                still = True
            if still:
                problems.extend(found)
    return problems


def _shard_problems(fs, stage_dir: str, manifest: dict[str, Any]) -> list[str]:
    problems = []
    for entry in manifest.get("files", {}).values():
        path = join(stage_dir, entry["path"])
        try:
            data = read_bytes(fs, path)
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        actual = sha256_bytes(data)
        if actual != entry["sha256"]:
            problems.append(f"{path}: checksum mismatch: manifest sha256 {entry['sha256']}, file sha256 {actual}")
            continue
        if entry["path"].endswith(".parquet"):
            try:
                rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
            except Exception as e:  # a corrupt file whose checksum was forged into the manifest
                problems.append(f"{path}: unreadable parquet ({e})")
                continue
            if rows != entry["rows"]:
                problems.append(f"{path}: row count {rows} does not match manifest ({entry['rows']})")
    return problems


def remove_shard(fs, stage_dir: str, name: str) -> None:
    """Delete one shard: its manifest first (from then on it is incomplete, never read), then its files."""
    for path in (manifest_path(stage_dir, name), data_path(stage_dir, name), rejected_path(stage_dir, name)):
        remove_if_exists(fs, path)


# A temp file's name says who writes it: .tmp-<uuid>~<pid>~<host>~<final name>. Cleanup removes only
# temp files whose writer is gone, so a second process working in the same folder (another run of
# the partition, a stage deployment) never deletes a write in flight.
_TEMP_OWNER = re.compile(r"^\.tmp-[0-9a-f]{32}~(\d+)~([^~/]*)~")
FOREIGN_TEMP_MAX_AGE_S = 3600.0  # a temp file written from another host (shared disk) is a leftover after this


@functools.lru_cache(maxsize=1)
def _this_host() -> str:
    """This host as a temp-name tag: its name and its PID namespace, since containers on one host may
    share a hostname but not their process ids (safe characters only)."""
    try:
        ns = f"@{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        ns = ""
    return re.sub(r"[^\w.-]", "_", socket.gethostname())[:64] + ns


def _temp_prefix() -> str:
    return f".tmp-{uuid.uuid4().hex}~{os.getpid()}~{_this_host()}~"


def _writer_gone(fs, path: str) -> bool:
    match = _TEMP_OWNER.match(path.rsplit("/", 1)[-1])
    if match is None:
        return True  # a name from before writers were recorded: a leftover
    pid, host = int(match.group(1)), match.group(2)
    if host == _this_host():
        if pid == os.getpid():
            return False  # this process is writing it (another thread)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    try:
        return time.time() - os.path.getmtime(path) > FOREIGN_TEMP_MAX_AGE_S
    except OSError:
        return False


def remove_temp_files(fs, stage_dir: str) -> int:
    """Delete leftovers of killed writes (``.tmp-*`` files whose writer process is gone); they are
    never read as shards.

    Looks in the stage folder and in its private ``_*`` subfolders: ``_rejected``, ``_manifests``
    and dedup's ``_signatures``/``_clusters`` (each with its own ``_manifests``), where a kill
    mid-write leaves temp files too.
    """
    removed = 0
    subs = [stage_dir]
    for sub in subs:  # grows while walking: private folders nest (05_dedup/_signatures/_manifests)
        base = _strip(fs, sub)
        if fs.exists(base):
            subs.extend(p for p in fs.ls(base, detail=False) if p.rsplit("/", 1)[-1].startswith("_") and fs.isdir(p))
    for sub in subs:
        base = _strip(fs, sub)
        if not fs.exists(base):
            continue
        for p in fs.ls(base, detail=False):
            if p.rsplit("/", 1)[-1].startswith(".tmp-") and _writer_gone(fs, p):
                try:
                    fs.rm(p)
                except FileNotFoundError:  # renamed into place or removed meanwhile
                    continue
                removed += 1
    return removed
