"""Token shards -> one stream -> seeded, resumable, rank-disjoint training windows."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib import shards
from pipeline_lib.model import data


def _docs(n_docs: int = 30, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, 1000, rng.integers(5, 60))) + [1000] for _ in range(n_docs)]


@pytest.fixture
def token_dir(tmp_path, shard_writer):
    path = str(tmp_path / "07_tokens")
    shard_writer(path, _docs(), {"encoding": "gpt2"}, docs_per_shard=7)
    return path


def test_stream_is_every_document_in_shard_order(token_dir):
    stream = data.load_token_stream(shards.filesystem(token_dir), token_dir)
    docs = _docs()
    assert stream.tokens.tolist() == [t for d in docs for t in d]
    assert stream.doc_lengths.tolist() == [len(d) for d in docs]
    assert stream.tokens.dtype == np.uint16
    assert [i["shard"] for i in stream.inputs] == [f"part-0000{i}" for i in range(5)]
    assert stream.tokenizer == {"encoding": "gpt2"}


def test_sliced_list_arrays_are_read_through_their_offsets():
    import pyarrow as pa

    column = pa.array([[1, 2], [3, 4, 5], [6]], pa.list_(pa.uint16())).slice(1, 2)
    values, lengths = data._flat_values(pa.chunked_array([column]))
    assert values[0].tolist() == [3, 4, 5, 6] and lengths[0].tolist() == [3, 1]


def test_a_corrupt_shard_is_refused(token_dir):
    path = token_dir + "/part-00002.parquet"
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    open(path, "wb").write(bytes(blob))
    with pytest.raises(shards.ShardError, match="checksum mismatch"):
        data.load_token_stream(shards.filesystem(token_dir), token_dir)


def test_no_shards_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no token shards"):
        data.load_token_stream(shards.filesystem(str(tmp_path)), str(tmp_path / "07_tokens"))


def test_validation_split_falls_on_a_document_boundary(token_dir):
    stream = data.load_token_stream(shards.filesystem(token_dir), token_dir)
    train, val = data.split_train_val(stream, 0.1, min_val_tokens=17)
    assert len(train) + len(val) == len(stream.tokens)
    assert len(train) in set(np.cumsum(stream.doc_lengths).tolist())
    assert 17 <= len(val) < 0.3 * len(stream.tokens)
    # Too little data for a held-out part: everything trains.
    assert data.split_train_val(stream, 0.1, min_val_tokens=len(stream.tokens))[1] is None


@pytest.mark.parametrize("frac", [0.05, 0.2])
def test_one_huge_last_document_does_not_become_most_of_the_validation_part(frac):
    docs = [20] * 50 + [9000]  # the only boundary near the end is 9,000 tokens from it
    stream = data.TokenStream(np.zeros(sum(docs), np.uint16), np.array(docs, np.int64))
    train, val = data.split_train_val(stream, frac, min_val_tokens=65)
    assert len(train) + len(val) == 10_000
    assert len(val) == int(10_000 * frac)  # was 9,000 (90% held out) at either fraction
    reverse = data.TokenStream(stream.tokens, np.array(docs[::-1], np.int64))  # boundaries near: used
    train, val = data.split_train_val(reverse, frac, min_val_tokens=65)
    assert len(train) in set(np.cumsum(reverse.doc_lengths).tolist())
    assert 0.5 * 10_000 * frac <= len(val) <= 1.5 * 10_000 * frac


def test_windows_are_next_token_pairs_that_cross_document_boundaries():
    tokens = np.arange(1000, dtype=np.uint16)
    sampler = data.WindowSampler(tokens, block_size=8, batch_size=4, seed=1)
    batch = sampler.next_batch()
    assert batch.shape == (4, 9) and batch.dtype == np.int64
    assert (np.diff(batch, axis=1) == 1).all()  # contiguous runs of the stream
    assert set((batch[:, 0] % 8).tolist()) == {0}
    docs = _docs()
    stream = np.array([t for d in docs for t in d], dtype=np.uint16)
    seen = np.concatenate([data.WindowSampler(stream, 16, 8, seed=3).next_batch() for _ in range(4)])
    assert any(1000 in row[:-1].tolist() for row in seen)  # end-of-text inside a window


def test_an_epoch_visits_every_window_once_in_a_seeded_order():
    tokens = np.arange(8 * 20 + 1, dtype=np.uint32)
    a = data.WindowSampler(tokens, 8, 5, seed=7)
    starts = np.concatenate([a.next_batch()[:, 0] for _ in range(4)])
    assert sorted(starts.tolist()) == list(range(0, 160, 8))
    b = data.WindowSampler(tokens, 8, 5, seed=7)
    assert np.array_equal(np.concatenate([b.next_batch()[:, 0] for _ in range(4)]), starts)
    c = data.WindowSampler(tokens, 8, 5, seed=8)
    assert not np.array_equal(np.concatenate([c.next_batch()[:, 0] for _ in range(4)]), starts)
    assert a.epoch == 1.0
    assert not np.array_equal(a.next_batch()[:, 0], starts[:5])  # a new epoch reshuffles


def test_ranks_take_disjoint_shares_of_the_global_batch():
    tokens = np.arange(8 * 64 + 1, dtype=np.uint32)
    single = data.WindowSampler(tokens, 8, 8, seed=2)
    ranks = [data.WindowSampler(tokens, 8, 4, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        whole = single.next_batch()
        parts = [s.next_batch() for s in ranks]
        assert np.array_equal(np.concatenate(parts), whole)


def test_resuming_from_the_saved_position_continues_the_same_batches():
    tokens = np.arange(8 * 30 + 1, dtype=np.uint32)
    straight = data.WindowSampler(tokens, 8, 7, seed=4)
    expected = [straight.next_batch() for _ in range(10)]
    first = data.WindowSampler(tokens, 8, 7, seed=4)
    for _ in range(6):
        first.next_batch()
    resumed = data.WindowSampler(tokens, 8, 7, seed=4)
    resumed.load_state_dict(first.state_dict())
    assert all(np.array_equal(resumed.next_batch(), e) for e in expected[6:])
    with pytest.raises(ValueError, match="belongs to a stream of .* training windows and this run has"):
        data.WindowSampler(tokens[:100], 8, 7, seed=4).load_state_dict(first.state_dict())


def test_too_few_tokens_for_one_window_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot fill one window"):
        data.WindowSampler(np.arange(8, dtype=np.uint16), block_size=8, batch_size=1, seed=0)


def test_validation_batches_are_fixed_and_split_between_ranks():
    tokens = np.arange(8 * 40 + 1, dtype=np.uint32)
    one = data.validation_batches(tokens, 8, 4, n_batches=2)
    assert len(one) == 2 and all(b.shape == (4, 9) for b in one)
    again = data.validation_batches(tokens, 8, 4, n_batches=2)
    assert all(np.array_equal(a, b) for a, b in zip(one, again))
    shares = [data.validation_batches(tokens, 8, 4, 2, rank=r, world_size=2) for r in range(2)]
    starts = [set(np.concatenate(s)[:, 0].tolist()) for s in shares]
    assert not starts[0] & starts[1] and len(starts[0]) == len(starts[1]) == 8
    assert data.validation_batches(None, 8, 4, 2) == []
