"""A persistent index of documents kept by earlier runs, so a new run drops what was kept before.

What it stores per kept document: its id, its normalised-text hash, its band keys and its
signature (to verify a band collision like the in-run clustering does). Two back ends share one
interface: a directory (local or any fsspec URL; one Parquet file per run, rewritten whole, so a
rerun of the same partition replaces its own entries) and Redis (hashes shared by many workers;
``HSETNX`` so the first run to keep a document owns it; a redone run first removes the fields its
earlier attempt set, so there too its entries are its last attempt's). Entries a run wrote itself are ignored
when that run looks up, which keeps a rerun (or a run killed after updating the index) idempotent.

Runs sharing an index take turns: a run holds the index's lock from its first lookup to its last
write (a Redis lock, or an OS file lock for a local directory), so two backfills running at once
cannot both look before either writes and both keep the same document. A remote directory (s3://)
has no lock to take: parallel runs against one are not serialised (a warning says so).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline_lib import shards
from pipeline_lib.config import DedupConfig, PipelineConfig
from pipeline_lib.dedup.clusters import band_keys
from pipeline_lib.dedup.minhash import estimated_jaccard
from pipeline_lib.dedup.normalize import NORMALIZATION_VERSION

_SEP = "\x1f"  # between run key and id in Redis values
LOCK_TTL_SECONDS = 120  # a Redis lock whose holder died frees itself after this; a live holder renews it
log = logging.getLogger(__name__)


class IndexBusy(TimeoutError):
    """Another run held the dedup index for longer than dedup.index_lock_wait_seconds (or this run
    lost the lock). A TimeoutError, so the task's I/O retry policy tries the step again."""


def index_params_key(dcfg: DedupConfig) -> str:
    """Entries are only comparable under the same shingling and hashing: they live apart per key."""
    params = {"ngram": dcfg.ngram, "num_perm": dcfg.num_perm, "seed": dcfg.seed, "bands": dcfg.bands,
              "rows": dcfg.rows, "shingle_hash": dcfg.shingle_hash, "normalization": NORMALIZATION_VERSION}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


class DedupIndex(ABC):
    @abstractmethod
    def lookup_exact(self, hashes: np.ndarray, run_key: str) -> np.ndarray:
        """Per hash, the entry (``owner``: run key + _SEP + id) of a document another run kept with
        that text hash, else None. Entries are per run: a URL recrawled in two partitions has one
        id and two versions, and each is verified against its own signature."""

    @abstractmethod
    def lookup_band(self, band: int, keys: np.ndarray, run_key: str) -> np.ndarray:
        """Per band key, the entry of a document another run kept with that key, else None."""

    @abstractmethod
    def records(self, owners: list[str]) -> dict[str, tuple[int, np.ndarray | None]]:
        """entry -> (exact hash, signature or None) for entries found by a lookup."""

    @abstractmethod
    def add(self, run_key: str, ids: np.ndarray, exact: np.ndarray, bands: np.ndarray | None,
            sig: np.ndarray | None) -> None:
        """Record the documents this run kept (bands: n x bands uint64)."""

    @contextmanager
    def exclusive(self, wait_seconds: float) -> Iterator[None]:
        """Hold the index against other runs (waiting up to wait_seconds for one that holds it)."""
        yield

    def renew(self) -> None:
        """Tell the lock this run is still working (between steps of a long match)."""

    def close(self) -> None:
        pass


class DirectoryIndex(DedupIndex):
    """One Parquet file per run under <url>/<namespace>/<params>/<run name>/<partition>.parquet."""

    def __init__(self, url: str, namespace: str, params_key: str, storage_options: dict | None = None):
        self.fs = shards.filesystem(url, storage_options)
        self.base = shards.join(url, namespace, params_key)
        self._loaded: tuple[str, pa.Table] | None = None

    def _run_path(self, run_key: str) -> str:
        return shards.join(self.base, f"{run_key}.parquet")

    @contextmanager
    def exclusive(self, wait_seconds):
        if not shards.is_local(self.fs):
            log.warning("dedup index %s is not local: runs sharing it are not serialised (use a Redis index "
                        "for parallel backfills)", self.base)
            yield
            return
        import fcntl

        lock_dir = self.fs._strip_protocol(self.base)
        os.makedirs(lock_dir, exist_ok=True)
        # flock: held by this open file, released by the OS if the process dies.
        with open(os.path.join(lock_dir, ".lock"), "a+b") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexBusy(f"dedup index {lock_dir} was held by another run for more than "
                                        f"{wait_seconds:g} s (dedup.index_lock_wait_seconds)") from None
                    time.sleep(0.1)
            try:
                self._loaded = None  # what other runs wrote before we held the lock
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _others(self, run_key: str) -> pa.Table:
        """Every other run's entries, read once per run key; sorted band keys built lazily."""
        if self._loaded is None or self._loaded[0] != run_key:
            mine = self.fs._strip_protocol(self._run_path(run_key))
            # A .tmp-* file is a run's write in flight or killed: never an entry (a killed write's
            # leftover made a rerun drop its own documents, or every later run fail on its bytes).
            paths = sorted(p for p in self.fs.glob(self.fs._strip_protocol(self.base) + "/*/*.parquet")
                           if p != mine and not p.rsplit("/", 1)[-1].startswith(".tmp-"))
            tables = []
            base = self.fs._strip_protocol(self.base).rstrip("/") + "/"
            for p in paths:
                table = pq.read_table(io.BytesIO(shards.read_bytes(self.fs, p)))
                run = p[len(base):].removesuffix(".parquet")  # <run name>/<partition>, its run key
                owners = pc.binary_join_element_wise(pa.scalar(run), table.column("id"), _SEP)
                tables.append(table.append_column("owner", owners))
            # Runs with dedup.near off wrote no band or signature columns: those rows hold nulls there.
            table = pa.concat_tables(tables, promote_options="default") if tables else None
            self._loaded = (run_key, table)
            self._sorted: dict[str, Any] = {}
        return self._loaded[1]

    def _find(self, column: str, keys: np.ndarray, run_key: str) -> np.ndarray:
        found = np.full(len(keys), None, dtype=object)
        table = self._others(run_key)
        if table is None or table.num_rows == 0 or column not in table.column_names:
            return found
        if column not in self._sorted:
            col = table.column(column)
            rows = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False)) if col.null_count else None
            values = (col if rows is None else col.take(pa.array(rows))).to_numpy()
            order = np.argsort(values, kind="stable")  # stable: equal keys resolve the same way every time
            self._sorted[column] = (values[order], order if rows is None else rows[order])
        values, order = self._sorted[column]
        at = np.searchsorted(values, keys)
        hit = at < len(values)
        hit[hit] = values[at[hit]] == keys[hit]
        if "owner" not in self._sorted:
            self._sorted["owner"] = np.asarray(table.column("owner").to_pylist(), dtype=object)
        found[hit] = self._sorted["owner"][order[at[hit]]]
        return found

    def lookup_exact(self, hashes, run_key):
        return self._find("exact_hash", hashes, run_key)

    def lookup_band(self, band, keys, run_key):
        return self._find(f"band_{band}", keys, run_key)

    def records(self, owners):
        table = self._loaded[1] if self._loaded else None
        if table is None or not owners:
            return {}
        wanted = pa.array(sorted(set(owners)), pa.string())
        rows = np.flatnonzero(pc.is_in(table.column("owner"), value_set=wanted).to_numpy(zero_copy_only=False))
        found = table.take(pa.array(rows))
        exact = found.column("exact_hash").to_numpy()
        sig = valid = None
        if "signature" in found.column_names:
            column = found.column("signature").combine_chunks()
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            width = column.type.list_size  # the child values hold a slot for null rows too
            sig = column.values.to_numpy(zero_copy_only=False)[column.offset * width:][:len(column) * width]
            sig = sig.reshape(len(column), width)
        out = {}
        for i, owner in enumerate(found.column("owner").to_pylist()):
            out.setdefault(owner, (int(exact[i]), sig[i] if sig is not None and valid[i] else None))
        return out

    def add(self, run_key, ids, exact, bands, sig):
        columns = {"id": pa.array(list(ids), pa.string()), "exact_hash": pa.array(exact, pa.uint64())}
        if bands is not None:
            for b in range(bands.shape[1]):
                columns[f"band_{b}"] = pa.array(bands[:, b], pa.uint64())
        if sig is not None:
            columns["signature"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), sig.shape[1])
        shards.write_bytes_atomic(self.fs, self._run_path(run_key), shards.table_to_parquet_bytes(pa.table(columns)))
        self._loaded = None


class RedisIndex(DedupIndex):
    """Redis hashes: <ns>:<params>:exact and :b<band> (key -> run\\x1fid), :doc (run\\x1fid -> hash+signature);
    a set :run:<run key> per run of the fields it tried to set, so a redone run replaces its entries."""

    _BATCH = 5000

    def __init__(self, url: str, namespace: str, params_key: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = f"{namespace}:{params_key}"
        self._lock = None

    @contextmanager
    def exclusive(self, wait_seconds):
        from redis.exceptions import LockError

        lock = self.client.lock(f"{self.prefix}:lock", timeout=LOCK_TTL_SECONDS, sleep=0.1,
                                blocking_timeout=wait_seconds, thread_local=False)
        if not lock.acquire():
            raise IndexBusy(f"dedup index {self.prefix} on Redis was held by another run for more than "
                            f"{wait_seconds:g} s (dedup.index_lock_wait_seconds)")
        self._lock = lock
        try:
            yield
        finally:
            self._lock = None
            try:
                lock.release()
            except LockError:  # expired: renew() already failed the step, or the add outran the TTL
                log.warning("dedup index lock %s:lock had expired before release", self.prefix)

    def renew(self):
        from redis.exceptions import LockNotOwnedError

        if self._lock is not None:
            try:
                self._lock.reacquire()
            except LockNotOwnedError:
                raise IndexBusy(f"lost the dedup index lock {self.prefix}:lock (held > {LOCK_TTL_SECONDS} s "
                                "without renewal): another run may have matched meanwhile; retry the step") from None

    def _get(self, name: str, keys: np.ndarray, run_key: str) -> np.ndarray:
        found = np.full(len(keys), None, dtype=object)
        fields = [int(k).to_bytes(8, "little") for k in keys]
        for s in range(0, len(fields), self._BATCH):
            for i, value in enumerate(self.client.hmget(f"{self.prefix}:{name}", fields[s:s + self._BATCH])):
                if value is not None:
                    owner = value.decode("utf-8")
                    if owner.split(_SEP, 1)[0] != run_key:
                        found[s + i] = owner
        return found

    def lookup_exact(self, hashes, run_key):
        return self._get("exact", hashes, run_key)

    def lookup_band(self, band, keys, run_key):
        return self._get(f"b{band}", keys, run_key)

    def records(self, owners):
        out = {}
        owners = list(dict.fromkeys(owners))
        for s in range(0, len(owners), self._BATCH):
            chunk = owners[s:s + self._BATCH]
            blobs = self.client.hmget(f"{self.prefix}:doc", chunk)
            # An index written before entries were per run keyed :doc by the bare id.
            missing = [i for i, blob in enumerate(blobs) if blob is None]
            if missing:
                older = self.client.hmget(f"{self.prefix}:doc", [chunk[i].split(_SEP, 1)[-1] for i in missing])
                for i, blob in zip(missing, older):
                    blobs[i] = blob
            for owner, blob in zip(chunk, blobs):
                if blob is not None:
                    sig = np.frombuffer(blob[8:], dtype="<u4") if len(blob) > 8 else None
                    out[owner] = (int.from_bytes(blob[:8], "little"), sig)
        return out

    # Delete each listed field only while this run still owns it (its value, or for :doc its field,
    # starts with "<run key>\x1f"), and drop it from the run's set in the same step: a forget cut
    # short and retried never deletes what another run set meanwhile.
    _FORGET = r"""
    for i = 3, #ARGV do
      local m = ARGV[i]
      local sep = string.find(m, "\31", 1, true)
      local name, field = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
      local key = ARGV[1] .. ":" .. name
      local owned = name == "doc" and string.sub(field, 1, #ARGV[2]) == ARGV[2]
      if name ~= "doc" then
        local v = redis.call("HGET", key, field)
        owned = v and string.sub(v, 1, #ARGV[2]) == ARGV[2]
      end
      if owned then redis.call("HDEL", key, field) end
      redis.call("SREM", KEYS[1], m)
    end
    return 0
    """

    def _forget(self, run_key: str) -> None:
        """Remove what an earlier attempt of this run wrote (the set <prefix>:run:<run key> lists the
        fields it tried to set), as the directory index rewrites a run's file: a redone partition's
        entries are its last attempt's only, never a document that is in no output any more."""
        owned = f"{self.prefix}:run:{run_key}"
        forget = self.client.register_script(self._FORGET)
        members = list(self.client.sscan_iter(owned, count=self._BATCH))
        for s in range(0, len(members), self._BATCH):
            forget(keys=[owned], args=[self.prefix, f"{run_key}{_SEP}", *members[s:s + self._BATCH]])
            self.renew()

    def add(self, run_key, ids, exact, bands, sig):
        self._forget(run_key)
        owned = f"{self.prefix}:run:{run_key}"
        pipe = self.client.pipeline(transaction=False)
        fields: list[bytes] = []  # "<hash name>\x1f<field>" per HSETNX of the batch

        def setnx(name: str, field: bytes, value) -> None:
            pipe.hsetnx(f"{self.prefix}:{name}", field, value)
            fields.append(name.encode() + _SEP.encode() + field)

        def flush() -> None:
            self.renew()  # a large add outlasted the lock's TTL, and another run matched meanwhile
            if fields:
                # Listed before they are set: a crash between the two leaves a field listed that this
                # run may not own (_forget checks), never one it owns unlisted.
                self.client.sadd(owned, *fields)
            pipe.execute()
            fields.clear()

        for i, doc in enumerate(ids):
            owner = f"{run_key}{_SEP}{doc}"
            setnx("exact", int(exact[i]).to_bytes(8, "little"), owner)
            if bands is not None:
                for b in range(bands.shape[1]):
                    setnx(f"b{b}", int(bands[i, b]).to_bytes(8, "little"), owner)
            blob = int(exact[i]).to_bytes(8, "little") + (sig[i].astype("<u4").tobytes() if sig is not None else b"")
            setnx("doc", owner.encode("utf-8"), blob)
            if i % self._BATCH == self._BATCH - 1:
                flush()
        flush()

    def close(self):
        self.client.close()


def open_index(cfg: PipelineConfig) -> DedupIndex:
    dcfg = cfg.dedup
    key = index_params_key(dcfg)
    if dcfg.index_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisIndex(dcfg.index_url, dcfg.index_namespace, key)
    return DirectoryIndex(cfg.resolve_path(dcfg.index_url), dcfg.index_namespace, key, cfg.run.storage_options)


def run_key(cfg: PipelineConfig) -> str:
    return f"{cfg.run.name}/{cfg.run.partition}"


def dedup_against_index(cfg: PipelineConfig, sigs: pa.Table, roots: np.ndarray, sig: np.ndarray | None):
    """Match this run's clusters against the index, then record the documents that survive.

    Returns (roots, ExternalMatches, counters); a cluster with any member matching an earlier
    run's document is dropped whole, in favour of that document (the smallest matched id).
    """
    dcfg = cfg.dedup
    key = run_key(cfg)
    n = sigs.num_rows
    ids = np.asarray(sigs.column("id").to_pylist(), dtype=object)
    exact = sigs.column("exact_hash").to_numpy()
    sig = sig if dcfg.near else None
    eligible = sigs.column("n_shingles").to_numpy() > 0 if dcfg.near else np.zeros(n, dtype=bool)
    match = np.full(n, None, dtype=object)
    index = open_index(cfg)
    try:
        # From the first lookup to the add, no other run may look or add: else two runs started
        # together would each miss the other's documents and both keep them.
        with index.exclusive(dcfg.index_lock_wait_seconds):
            if dcfg.exact:
                match = index.lookup_exact(exact, key)
            all_bands = np.empty((n, dcfg.bands), dtype=np.uint64) if dcfg.near else None
            candidates: list[tuple[np.ndarray, np.ndarray]] = []
            for band in range(dcfg.bands if dcfg.near else 0):
                index.renew()
                all_bands[:, band] = band_keys(sig, band, dcfg.rows)
                ask = np.flatnonzero(eligible & (match == None))  # noqa: E711 (object array)
                found = index.lookup_band(band, all_bands[ask, band], key)
                hit = found != None  # noqa: E711
                candidates.append((ask[hit], found[hit]))
            near_rows, near_ids = _verified(index, candidates, sig, dcfg.verify_threshold)
            exact_hits = int((match != None).sum())  # noqa: E711
            for row, owner in zip(near_rows, near_ids):
                if match[row] is None or _id_of(owner) < _id_of(match[row]):
                    match[row] = owner
            external = _per_cluster(roots, match, index)
            dropped = (roots != np.arange(n)) | (external.kept_id[roots] != None)  # noqa: E711
            keep = ~dropped
            index.renew()
            index.add(key, ids[keep], exact[keep], None if all_bands is None else all_bands[keep],
                      None if sig is None else sig[keep])
    finally:
        index.close()
    counters = {"dedup.index_exact_matches": exact_hits, "dedup.index_near_matches": len(set(near_rows.tolist())),
                "dedup.index_added": int(keep.sum())}
    return roots, external, counters


def _verified(index: DedupIndex, candidates, sig, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    if not candidates:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=object)
    rows = np.concatenate([c[0] for c in candidates])
    found = np.concatenate([c[1] for c in candidates])
    if threshold <= 0 or not len(rows):
        return rows, found
    records = index.records(found.tolist())
    ok = np.zeros(len(rows), dtype=bool)
    for i, (row, doc) in enumerate(zip(rows, found)):
        other = records.get(doc)
        if other is not None and other[1] is not None:
            ok[i] = estimated_jaccard(sig[row], other[1]) >= threshold
    return rows[ok], found[ok]


def _per_cluster(roots: np.ndarray, match: np.ndarray, index: DedupIndex):
    from pipeline_lib.dedup.steps import ExternalMatches

    kept = np.full(len(roots), None, dtype=object)  # per root, the matched entry with the smallest id
    for row in np.flatnonzero(match != None):  # noqa: E711
        root = roots[row]
        if kept[root] is None or _id_of(match[row]) < _id_of(kept[root]):
            kept[root] = match[row]
    kept_id = np.full(len(roots), None, dtype=object)
    kept_exact = np.zeros(len(roots), dtype=np.uint64)
    matched_roots = np.flatnonzero(kept != None)  # noqa: E711
    records = index.records([kept[r] for r in matched_roots])
    for r in matched_roots:
        kept_id[r] = _id_of(kept[r])
        kept_exact[r] = records.get(kept[r], (0, None))[0]
    return ExternalMatches(kept_id=kept_id, kept_exact=kept_exact)


def _id_of(owner: str) -> str:
    return owner.split(_SEP, 1)[1]
