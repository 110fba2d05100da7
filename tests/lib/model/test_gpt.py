"""The transformer itself: shapes, causality, weight tying, presets, optimizer groups, schedule."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline_lib.config import TrainConfig
from pipeline_lib.model.gpt import GPT, GPTConfig, config_from_dict, pad_vocab, preset
from pipeline_lib.model.train import lr_at


def small_model(seed: int = 0, vocab: int = 97) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, padded_vocab_size=pad_vocab(vocab), block_size=16, n_layer=2, n_head=2, n_embd=32))


def test_vocab_is_padded_to_a_multiple_of_64():
    assert pad_vocab(50257) == 50304
    assert pad_vocab(64) == 64
    assert pad_vocab(257) == 320
    cfg = preset("gpt2-124m", vocab_size=50257)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.padded_vocab_size) == (12, 12, 768, 1024, 50304)


def test_gpt2_124m_has_gpt2s_parameter_count():
    # GPT-2 small with its unpadded 50257-token vocabulary and tied embeddings: 124,439,808.
    cfg = GPTConfig(vocab_size=50257, padded_vocab_size=50257)
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_params() == 124_439_808


def test_unknown_preset_and_bad_heads_are_rejected():
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge", vocab_size=100)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)


def test_forward_shapes_and_initial_loss_near_uniform():
    model = small_model()
    idx = torch.randint(0, 97, (3, 16))
    logits, loss = model(idx, torch.randint(0, 97, (3, 16)))
    assert logits.shape == (3, 16, pad_vocab(97))
    # Small random init: predictions are close to uniform over the padded vocabulary.
    assert abs(loss.item() - math.log(pad_vocab(97))) < 0.3
    assert model(idx)[1] is None


def test_output_weights_are_the_token_embedding():
    model = small_model()
    assert model.lm_head.weight is model.token_embedding.weight
    with torch.no_grad():
        model.token_embedding.weight[5].zero_()
    assert torch.count_nonzero(model.lm_head.weight[5]) == 0


def test_attention_is_causal():
    model = small_model().eval()
    idx = torch.randint(0, 97, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 97
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(changed)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:], atol=1e-4)


def test_context_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="exceeds the context"):
        small_model()(torch.zeros(1, 17, dtype=torch.long))


def test_weight_decay_only_on_matrices():
    model = small_model()
    opt = model.optimizer(1e-3, 0.1, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    total = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert total == model.num_params()  # the tied matrix appears once


def test_config_round_trips_through_a_dict():
    cfg = preset("small", vocab_size=1000, block_size=128, dropout=0.1)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    tc = TrainConfig(learning_rate=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(0.1)
    assert lr_at(9, tc) == pytest.approx(1.0)
    assert lr_at(60, tc) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_at(110, tc) == pytest.approx(0.1)
    values = [lr_at(s, tc) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_flops_per_token_counts_six_per_parameter_plus_attention():
    model = small_model()
    n = model.num_params(include_position=False)
    assert model.flops_per_token(16) == 6 * n + 12 * 2 * 16 * 32


def test_each_process_gets_an_indexed_device():
    from pipeline_lib.model.train import resolve_device

    assert resolve_device("auto", 3, cuda_available=True) == torch.device("cuda:3")
    assert resolve_device("cuda", 1, cuda_available=True) == torch.device("cuda:1")
    assert resolve_device("cuda:5", 1, cuda_available=True) == torch.device("cuda:5")
    assert resolve_device("auto", 0, cuda_available=False) == torch.device("cpu")
    assert resolve_device("cpu", 2, cuda_available=True) == torch.device("cpu")


def test_kv_cache_gives_the_same_logits_as_recomputing():
    model = small_model().eval()
    idx = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_kv_cache()
        first, _ = model(idx[:, :6], kv_cache=cache)
        steps = [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(6, 10)]
    assert torch.allclose(first, full[:, :6], atol=1e-5)
    assert torch.allclose(torch.cat(steps, dim=1), full[:, 6:], atol=1e-5)
    with pytest.raises(ValueError, match="one new token"):
        model(idx[:, :2], kv_cache=cache)


def test_cached_generation_matches_uncached_across_a_full_context():
    from pipeline_lib.model.sample import generate

    model = small_model(seed=3).eval()
    prompt = torch.randint(0, 97, (12,)).tolist()
    # 12 + 20 tokens overflow the 16-token context: both paths slide the same window.
    assert generate(model, prompt, 20, temperature=0) == generate(model, prompt, 20, temperature=0, use_cache=False)
    assert generate(model, prompt, 20, seed=5) == generate(model, prompt, 20, seed=5, use_cache=False)
