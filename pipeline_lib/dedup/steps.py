"""The three dedup steps the flows call: signatures (map), clustering (reduce), filter (map).

Each step is idempotent like ``stage.run_shard``: its manifest records the dedup config hash and
the checksums of what it read, and a rerun with the same inputs returns the existing summary.

On disk, under ``05_dedup/``:
  _signatures/part-NNNNN.parquet   id, fetched_at, text_chars, exact_hash, n_shingles, signature
  _clusters/part-NNNNN.parquet     the rows of that shard to drop: id, reject_reason, dup_cluster,
                                   dup_kept_id; one manifest ``clusters.manifest.json`` lists them all
  part-NNNNN.parquet (+ _rejected/) the surviving documents
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib import shards
from pipeline_lib.config import DedupConfig, PipelineConfig
from pipeline_lib.dedup.clusters import ClusterParams, cluster
from pipeline_lib.dedup.minhash import compute_signatures
from pipeline_lib.dedup.normalize import NORMALIZATION_VERSION, exact_hash, normalize_bytes
from pipeline_lib.schema import REJECT_REASON, TIMESTAMP
from pipeline_lib.stage import (Stage, StageResult, input_entries, is_done, run_shard, summary_from_manifest,
                                write_result)

CLUSTERS_MANIFEST = "clusters"  # _clusters/_manifests/clusters.manifest.json
EXACT, NEAR = "exact_duplicate", "near_duplicate"
# "row" is the position in the input shard: ids need not be unique (one URL fetched twice).
DROP_SCHEMA = pa.schema([("row", pa.int64()), ("id", pa.string()), (REJECT_REASON, pa.string()),
                         ("dup_cluster", pa.string()), ("dup_kept_id", pa.string())])


@dataclass(frozen=True)
class ExternalMatches:
    """Per root row: the id (None = no match) and exact hash of a document an earlier run kept."""

    kept_id: np.ndarray  # object array of str | None
    kept_exact: np.ndarray  # uint64


def signature_table(table: pa.Table, dcfg: DedupConfig) -> pa.Table:
    """The per-document dedup facts of one document table (no text: signatures are small)."""
    texts = table.column("text").to_pylist() if "text" in table.column_names else [""] * table.num_rows
    normalized = [normalize_bytes(t) for t in texts]
    n = table.num_rows
    if "fetched_at" in table.column_names:
        fetched = table.column("fetched_at").cast(TIMESTAMP)
    else:
        fetched = pa.nulls(n, TIMESTAMP)
    columns = {
        "id": table.column("id").cast(pa.string()),
        "fetched_at": fetched,
        "text_chars": pa.array([len(t or "") for t in texts], pa.int64()),
        "exact_hash": pa.array(np.array([exact_hash(t) for t in normalized], dtype=np.uint64), pa.uint64()),
    }
    if dcfg.near:
        sig, counts = compute_signatures(normalized, dcfg.ngram, dcfg.num_perm, dcfg.seed, dcfg.shingle_hash)
        columns["n_shingles"] = pa.array(counts, pa.int32())
        columns["signature"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), dcfg.num_perm)
    return pa.table(columns)


def preference_order(sigs: pa.Table, keep: str) -> np.ndarray:
    """Row indices from the document to keep first to the one to keep last."""
    if keep == "longest":
        first = ("text_chars", "descending", "at_end")
    else:  # a document without a fetch time is never preferred over one with
        first = ("fetched_at", "ascending" if keep == "earliest" else "descending", "at_end")
    return pc.sort_indices(sigs, sort_keys=[first, ("id", "ascending", "at_end")]).to_numpy()


def signature_matrix(sigs: pa.Table, num_perm: int) -> np.ndarray:
    column = sigs.column("signature").combine_chunks()
    return column.flatten().to_numpy().reshape(-1, num_perm)


def cluster_table(sigs: pa.Table, dcfg: DedupConfig, sig: np.ndarray | None = None) -> np.ndarray:
    """The kept row (cluster root) of every row of ``sigs``, by the configured keep rule.

    ``sig`` is the signature matrix when the caller already holds it apart from the table.
    """
    params = ClusterParams(dcfg.bands, dcfg.rows, dcfg.verify_threshold, dcfg.neighbours)
    exact = sigs.column("exact_hash").to_numpy() if dcfg.exact else None
    has_shingles = None
    if dcfg.near:
        sig = signature_matrix(sigs, dcfg.num_perm) if sig is None else sig
        has_shingles = sigs.column("n_shingles").to_numpy() > 0
    else:
        sig = None
    if exact is None and sig is None:
        return np.arange(sigs.num_rows)
    order = preference_order(sigs, dcfg.keep)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return cluster(sig, exact, has_shingles, params, rank=rank)


def cluster_label_rows(ids: pa.Array | pa.ChunkedArray, roots: np.ndarray) -> np.ndarray:
    """Per row, the row holding its cluster's smallest id: a cluster label that does not depend on
    the keep rule. Ids stay in Arrow; only int64 arrays are built per document."""
    by_id = pc.sort_indices(ids).to_numpy()
    rank = np.empty(len(by_id), dtype=np.int64)
    rank[by_id] = np.arange(len(by_id))
    smallest = np.full(len(by_id), len(by_id), dtype=np.int64)
    np.minimum.at(smallest, roots, rank)
    return by_id[smallest[roots]]


def drop_rows(sigs: pa.Table, roots: np.ndarray, external: ExternalMatches | None = None) -> tuple[np.ndarray, pa.Table]:
    """(mask of dropped rows, their drop table) from each row's root (its kept row).

    ``external`` (index scope) names, per root, a document kept by an earlier run that the
    cluster matched; such clusters are dropped whole, their kept id being the earlier one.
    """
    ids = sigs.column("id").combine_chunks()
    exact = sigs.column("exact_hash").to_numpy()
    dropped = roots != np.arange(len(roots))
    matched = None
    if external is not None:
        matched = external.kept_id != None  # noqa: E711 (object array of str | None, per root)
        dropped |= matched[roots]
    rows = np.flatnonzero(dropped)
    kept_rows = roots[rows]
    kept_ids = ids.take(pa.array(kept_rows))
    labels = ids.take(pa.array(cluster_label_rows(ids, roots)[rows]))
    kept_exact = exact[kept_rows]
    if matched is not None and matched[kept_rows].any():
        # Only rows of clusters an earlier run already kept become Python strings here.
        from_index = matched[kept_rows]
        earlier = external.kept_id[kept_rows]
        kept_list, label_list = kept_ids.to_pylist(), labels.to_pylist()
        for i in np.flatnonzero(from_index):
            kept_list[i] = earlier[i]
            label_list[i] = min(label_list[i], earlier[i])
        kept_ids, labels = pa.array(kept_list, pa.string()), pa.array(label_list, pa.string())
        kept_exact = np.where(from_index, external.kept_exact[kept_rows], kept_exact)
    reasons = pa.array(np.where(exact[rows] == kept_exact, EXACT, NEAR), pa.string())
    table = pa.table([pa.array(rows, pa.int64()), ids.take(pa.array(rows)), reasons, labels, kept_ids], schema=DROP_SCHEMA)
    return dropped, table


class _SignatureStep(Stage):
    """The map step as a stage (every row kept, as its signature), so ``run_shard`` does the I/O."""

    name = "dedup_signatures"
    section = "dedup"
    version = NORMALIZATION_VERSION  # signatures of another normalisation are not this run's

    def process(self, table: pa.Table) -> StageResult:
        return StageResult.keep_all(signature_table(table, self.cfg.dedup))


def run_signatures_shard(cfg: PipelineConfig, fs, in_dir: str, sig_dir: str, name: str) -> dict[str, Any]:
    return run_shard(_SignatureStep(cfg), fs, in_dir, sig_dir, name, out_stage=_SignatureStep.name)


def run_clustering(cfg: PipelineConfig, fs, sig_dir: str, clusters_dir: str) -> dict[str, Any]:
    dcfg = cfg.dedup
    names = shards.list_shards(fs, sig_dir)
    manifests = [shards.load_manifest(fs, sig_dir, n) for n in names]  # read once: inputs, sizes, sources
    inputs = [entry for n, m in zip(names, manifests) for entry in input_entries(fs, sig_dir, n, m)]
    config_hash = cfg.section_hash("dedup")
    done = is_done(fs, clusters_dir, CLUSTERS_MANIFEST, config_hash, inputs)
    if done:
        return summary_from_manifest(done, skipped=True)
    t0 = time.perf_counter()
    sigs, sig, sizes = _load_signatures(fs, sig_dir, names, [e["rows"] for e in inputs], dcfg)
    shard_of_row = np.repeat(np.arange(len(names)), sizes)
    row_in_shard = np.arange(sigs.num_rows) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    # The input shard each signature shard was computed from: the filter refuses any other.
    sources = {n: (m["inputs"] or [{}])[0].get("sha256") for n, m in zip(names, manifests)}
    roots = cluster_table(sigs, dcfg, sig)
    counters: dict[str, int] = {}
    if dcfg.scope == "index":
        from pipeline_lib.dedup.index import dedup_against_index

        roots, external, counters = dedup_against_index(cfg, sigs, roots, sig)
        dropped, drops = drop_rows(sigs, roots, external)
    else:
        dropped, drops = drop_rows(sigs, roots)
    drops = drops.set_column(0, "row", pa.array(row_in_shard[drops.column("row").to_numpy()], pa.int64()))
    files = {}
    for i, name in enumerate(names):
        mine = drops.filter(pa.array(shard_of_row[dropped] == i))
        files[name] = shards.write_table_file(fs, clusters_dir, f"{name}.parquet", mine)
    reasons = pc.value_counts(drops.column(REJECT_REASON)).to_pylist() if drops.num_rows else []
    counters = {"rows_in": sigs.num_rows, "kept": sigs.num_rows - drops.num_rows, "rejected": drops.num_rows,
                "dedup.clusters": int(len(np.unique(roots[dropped]))) if drops.num_rows else 0,
                **{f"rejected.{r['values']}": r["counts"] for r in reasons}, **counters}
    manifest = shards.build_manifest(stage="dedup_clusters", name=CLUSTERS_MANIFEST, files=files, schema=DROP_SCHEMA,
                                     counters=counters, seconds=time.perf_counter() - t0, config_hash=config_hash,
                                     inputs=inputs, extra={"sources": sources})
    shards.write_manifest(fs, clusters_dir, CLUSTERS_MANIFEST, manifest)
    return summary_from_manifest(manifest, skipped=False)


def _load_signatures(fs, sig_dir: str, names: list[str], rows_per_shard: list[int], dcfg: DedupConfig):
    """(small columns as one table, signature matrix or None, rows per shard).

    Signatures go shard by shard into one preallocated matrix, so the peak is the matrix plus one
    shard in Arrow, not two copies of everything.
    """
    sizes = np.array(rows_per_shard, dtype=np.int64)
    sig = np.empty((int(sizes.sum()), dcfg.num_perm), dtype=np.uint32) if dcfg.near else None
    parts, offset = [], 0
    pool = pa.default_memory_pool()
    for name in names:
        part = shards.read_verified(fs, sig_dir, name)
        if sig is not None:
            for chunk in part.column("signature").chunks:  # zero-copy views, copied once into sig
                rows = len(chunk)
                sig[offset:offset + rows] = chunk.flatten().to_numpy().reshape(rows, dcfg.num_perm)
                offset += rows
        parts.append(part.drop_columns([c for c in ("signature",) if c in part.column_names]))
        del part
        pool.release_unused()  # hand the decoded shard back now, or the allocator keeps it per shard
    if not parts:
        empty = signature_table(pa.table({"id": pa.array([], pa.string())}), dcfg)
        parts = [empty.drop_columns([c for c in ("signature",) if c in empty.column_names])]
    return pa.concat_tables(parts), sig, sizes


def run_filter_shard(cfg: PipelineConfig, fs, in_dir: str, clusters_dir: str, out_dir: str, name: str) -> dict[str, Any]:
    clusters = shards.load_manifest(fs, clusters_dir, CLUSTERS_MANIFEST)
    if clusters is None or name not in clusters["files"]:
        raise shards.ShardError(f"{shards.manifest_path(clusters_dir, CLUSTERS_MANIFEST)}: no clustering result "
                                f"for shard {name}; run the clustering step first")
    inputs = input_entries(fs, in_dir, name) + [
        {"stage": "dedup_clusters", "shard": name, "sha256": clusters["files"][name]["sha256"]}]
    if clusters.get("sources", {}).get(name) != inputs[0]["sha256"]:
        raise shards.ShardError(f"{shards.data_path(in_dir, name)} changed after its signatures were clustered; "
                                "rerun the signature and clustering steps")
    config_hash = cfg.section_hash("dedup")
    done = is_done(fs, out_dir, name, config_hash, inputs)
    if done:
        return summary_from_manifest(done, skipped=True)
    t0 = time.perf_counter()
    table = shards.read_verified(fs, in_dir, name)
    drops = shards.read_verified(fs, clusters_dir, CLUSTERS_MANIFEST, which=name)
    rows = drops.column("row").to_numpy()
    if len(rows) and (rows.max() >= table.num_rows
                      or not table.column("id").cast(pa.string()).take(pa.array(rows)).equals(drops.column("id"))):
        raise shards.ShardError(f"{shards.data_path(clusters_dir, name)} does not describe {shards.data_path(in_dir, name)}")

    def per_row(column: str) -> list[str | None]:
        values = np.full(table.num_rows, None, dtype=object)
        values[rows] = drops.column(column).to_numpy(zero_copy_only=False)
        return values.tolist()

    result = StageResult.split(table, per_row(REJECT_REASON),
                               rejected_extra={"dup_cluster": per_row("dup_cluster"), "dup_kept_id": per_row("dup_kept_id")})
    manifest = write_result(fs, out_dir, name, out_dir.rstrip("/").rsplit("/", 1)[-1], table.num_rows, result,
                            config_hash, inputs, time.perf_counter() - t0)
    return summary_from_manifest(manifest, skipped=False)
