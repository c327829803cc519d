"""Tests for the theos models and their attention kernels (tiny models, CPU, fast)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import models.theos as theos_module
from models import Theos, TheosConfig, causal_attention, choose_kernel, flash_attn_available
from models.theos import apply_rope, rope_tables

TINY = TheosConfig(vocab_size=61, seq_len=16, dim=32, n_layers=2, n_heads=4, mlp_dim=128)


def make(seed: int = 0, **overrides) -> Theos:
    torch.manual_seed(seed)
    return Theos(dataclasses.replace(TINY, **overrides))


def tokens(B: int = 2, T: int = 12, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY.vocab_size, (B, T), generator=g)


def test_forward_shape_and_dtype():
    model = make()
    logits = model(tokens(B=3, T=TINY.seq_len))
    assert logits.shape == (3, TINY.seq_len, TINY.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(dim=30, n_heads=4),
        dict(dim=24, n_heads=8),
        dict(mlp="tanh"),
        dict(norm="layer"),
        dict(positions="alibi"),
    ],
    ids=["dim-not-divisible", "odd-head-dim", "unknown-mlp", "unknown-norm", "unknown-positions"],
)
def test_bad_config_raises(overrides):
    with pytest.raises(ValueError):
        Theos(dataclasses.replace(TINY, **overrides))


def test_an_odd_head_size_is_fine_without_rotary_embeddings():
    model = Theos(dataclasses.replace(TINY, dim=24, n_heads=8, positions="learned"))
    assert torch.isfinite(model(tokens(B=2, T=TINY.seq_len))).all()


def test_sequence_longer_than_seq_len_raises():
    with pytest.raises(ValueError):
        make()(tokens(T=TINY.seq_len + 1))


def test_the_config_refuses_a_choice_it_does_not_have_and_a_missing_mlp_width():
    # the default width is the run config's choice (tests/unit/config), not the model's
    with pytest.raises(ValueError, match="mlp must be one of 'swiglu', 'gelu', 'relu', got 'tanh'"):
        dataclasses.replace(TINY, mlp="tanh")
    with pytest.raises(ValueError, match="init must be one of"):
        dataclasses.replace(TINY, init="xavier")
    with pytest.raises(ValueError, match="mlp_dim must be positive, got 0"):
        dataclasses.replace(TINY, mlp_dim=0)
    assert Theos(dataclasses.replace(TINY, mlp_dim=40)).blocks[0].mlp.w1.out_features == 40


@pytest.mark.parametrize("mlp", ["swiglu", "gelu", "relu"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("original", [False, True], ids=["modern", "nanda"])
def test_parameter_count_matches_formula(mlp, tied, original):
    arch = dict(norm="none", positions="learned") if original else {}
    model = make(mlp=mlp, tie_embeddings=tied, **arch)
    V, d, L, T = TINY.vocab_size, TINY.dim, TINY.n_layers, TINY.seq_len
    m = 3 if mlp == "swiglu" else 2
    h = model.config.mlp_dim
    norms = 0 if original else (2 * L + 1) * d
    positions = T * d if original else 0
    expected = V * d + L * (4 * d * d + m * d * h) + norms + (0 if tied else V * d) + positions
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.num_parameters() == expected
    assert model.num_parameters(exclude_embedding=True) == expected - V * d


def test_the_original_grokking_architecture():
    """Nanda et al.'s model: no norms, learned positions, ReLU; it is causal and uses positions."""
    model = make(norm="none", positions="learned", mlp="relu").eval()
    assert not any(isinstance(m, torch.nn.RMSNorm) for m in model.modules())
    assert not hasattr(model, "rope_cos")  # nothing rotates q and k
    idx = tokens()
    with torch.no_grad():
        full = model(idx)
        changed = idx.clone()
        changed[:, -1] = (changed[:, -1] + 1) % TINY.vocab_size
        torch.testing.assert_close(model(changed)[:, :-1], full[:, :-1])  # causal
        swapped = idx[:, [1, 0, *range(2, idx.size(1))]]  # the same tokens, two places swapped
        assert not torch.allclose(model(swapped)[:, -1], full[:, -1])  # order reaches the output
        torch.testing.assert_close(model(idx, last_only=True), full[:, -1:])
    hidden = model.blocks[0].mlp.activation(torch.tensor([-1.0, 2.0]))
    assert hidden.tolist() == [0.0, 2.0]  # ReLU


@pytest.mark.parametrize("mlp", ["swiglu", "relu"])
def test_mlp_biases_start_at_zero_and_count(mlp):
    plain, biased = make(mlp=mlp), make(mlp=mlp, mlp_bias=True)
    h, d = plain.config.mlp_dim, TINY.dim
    per_layer = (2 * h if mlp == "swiglu" else h) + d  # w1 (and w3): h each; w2: d
    assert biased.num_parameters() - plain.num_parameters() == TINY.n_layers * per_layer
    mlp_layer = biased.blocks[0].mlp
    assert not mlp_layer.w2.bias.any() and not mlp_layer.w1.bias.any()
    assert biased.blocks[0].attn.qkv.bias is None and biased.lm_head.bias is None


def test_each_init_draws_the_scales_of_its_source():
    """gpt2: N(0, 0.02^2) with the output projections 1/sqrt(2 n_layers) smaller; nanda: std
    1/sqrt(dim), the output layer 1/sqrt(vocab); torch: the layers' own defaults, attention's
    as nn.MultiheadAttention's."""
    wide = dataclasses.replace(
        TINY, dim=256, n_layers=8, vocab_size=400, mlp="gelu", mlp_dim=1024, mlp_bias=True
    )

    def stds(init: str) -> dict[str, float]:
        torch.manual_seed(0)
        model = Theos(dataclasses.replace(wide, init=init))
        block = model.blocks[0]
        weights = {
            "embedding": model.tok_emb.weight,
            "qkv": block.attn.qkv.weight,
            "proj": block.attn.proj.weight,
            "mlp_out": block.mlp.w2.weight,
            "head": model.lm_head.weight,
            "bias": block.mlp.w1.bias,
        }
        return {name: weight.std().item() for name, weight in weights.items()}

    gpt2, nanda, default = stds("gpt2"), stds("nanda"), stds("torch")
    expected = {
        "gpt2": dict(embedding=0.02, qkv=0.02, proj=0.02 / 4, mlp_out=0.02 / 4, head=0.02),
        "nanda": dict(embedding=1 / 16, qkv=1 / 16, proj=1 / 16, mlp_out=1 / 16, head=1 / 20),
        # uniform in +-1/sqrt(fan_in): std 1/sqrt(3 fan_in); w1's bias likewise
        "torch": dict(
            embedding=1.0,
            qkv=math.sqrt(2 / (256 + 3 * 256)),  # Xavier-uniform, as nn.MultiheadAttention
            head=1 / math.sqrt(3 * 256),
            mlp_out=1 / math.sqrt(3 * 1024),
            bias=1 / math.sqrt(3 * 256),
        ),
    }
    for measured, (init, scales) in zip((gpt2, nanda, default), expected.items(), strict=True):
        for name, std in scales.items():
            assert measured[name] == pytest.approx(std, rel=0.1), (init, name)
    assert gpt2["bias"] == nanda["bias"] == 0.0


def test_tied_embeddings_share_the_weight():
    model = make(tie_embeddings=True)
    assert model.lm_head.weight is model.tok_emb.weight
    untied = make(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.tok_emb.weight


def test_causality():
    model = make().eval()
    idx = tokens(T=TINY.seq_len)
    t = 5
    changed = idx.clone()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % TINY.vocab_size
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_rope_depends_only_on_relative_position():
    cos, sin = rope_tables(seq_len=32, head_dim=8, theta=10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        rq = apply_rope(q.view(1, 1, 1, 8), cos[m : m + 1], sin[m : m + 1])
        rk = apply_rope(k.view(1, 1, 1, 8), cos[n : n + 1], sin[n : n + 1])
        return (rq * rk).sum()

    torch.testing.assert_close(score(3, 1), score(20, 18))
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_position_information_reaches_the_output(monkeypatch):
    # With one layer and no positional signal, the last position attends to the *set* of
    # earlier tokens, so swapping two earlier tokens cannot change its logits. RoPE must.
    model = make(n_layers=1).eval()
    idx = tokens(B=1, T=6)
    swapped = idx.clone()
    swapped[0, [0, 3]] = idx[0, [3, 0]]
    assert idx[0, 0] != idx[0, 3]
    with torch.no_grad():
        a, b = model(idx)[0, -1], model(swapped)[0, -1]
    assert (a - b).abs().max() > 1e-4

    # the same check without the rotation shows the test can tell the difference
    monkeypatch.setattr(theos_module, "apply_rope", lambda x, cos, sin: x)
    with torch.no_grad():
        a, b = model(idx)[0, -1], model(swapped)[0, -1]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_sdpa_matches_manual_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 10, 8) for _ in range(3))
    expected = causal_attention(q, k, v, "manual")
    torch.testing.assert_close(causal_attention(q, k, v, "sdpa"), expected, rtol=1e-5, atol=1e-5)
    # and the reference really is causal: the first query sees only the first value
    torch.testing.assert_close(expected[:, :, 0], v[:, :, 0])


def test_unknown_kernel_raises():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError):
        causal_attention(q, q, q, "fast")


def test_model_forward_same_with_manual_and_sdpa_kernels():
    model = make().eval()
    idx = tokens()
    with torch.no_grad():
        model.force_kernel = "manual"
        manual = model(idx)
        assert model.attention_kernel == "manual"
        model.force_kernel = None
        sdpa = model(idx)
        assert model.attention_kernel == "sdpa"
    torch.testing.assert_close(sdpa, manual, rtol=1e-5, atol=1e-5)


def _loss_and_grads(model: Theos, idx: torch.Tensor):
    logits = model(idx[:, :-1])
    loss = F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_same_loss_and_grads():
    plain = make().train()
    ckpt = make(seed=123).train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.gradient_checkpointing = True
    idx = tokens(T=TINY.seq_len)
    loss_a, grads_a = _loss_and_grads(plain, idx)
    loss_b, grads_b = _loss_and_grads(ckpt, idx)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", ["sdpa", "manual"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_last_only_gives_the_last_position_and_its_gradients(kernel, checkpointing):
    full, last = make().train(), make().train()
    for model in (full, last):
        model.force_kernel, model.gradient_checkpointing = kernel, checkpointing
    idx, target = tokens(B=5), torch.arange(5)
    logits_full = full(idx)[:, -1:]
    logits_last = last(idx, last_only=True)
    assert logits_last.shape == (5, 1, TINY.vocab_size)
    torch.testing.assert_close(logits_last, logits_full, rtol=1e-5, atol=1e-6)
    F.cross_entropy(logits_full[:, 0], target).backward()
    F.cross_entropy(logits_last[:, 0], target).backward()
    for (name, a), b in zip(full.named_parameters(), last.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_single_query_sees_every_key():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8) for _ in range(3))
    for kernel in ("sdpa", "manual"):
        last = causal_attention(q[:, :, -1:], k, v, kernel)
        torch.testing.assert_close(last, causal_attention(q, k, v, "manual")[:, :, -1:])
    with pytest.raises(ValueError, match="positions"):
        causal_attention(q[:, :, -2:], k, v, "sdpa")  # a causal mask would be misaligned


def test_same_seed_same_weights_different_seed_different():
    a, b, c = make(seed=7).state_dict(), make(seed=7).state_dict(), make(seed=8).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[name], c[name]) for name in a if name.endswith("weight"))


def test_residual_output_projections_are_scaled_down():
    model = make(dim=256, n_heads=4, n_layers=8, vocab_size=8)
    assert 0.015 < model.blocks[0].attn.qkv.weight.std() < 0.025
    scaled = 0.02 / (2 * 8) ** 0.5
    for block in model.blocks:
        for w in (block.attn.proj.weight, block.mlp.w2.weight):
            assert 0.8 * scaled < w.std() < 1.2 * scaled


def test_choose_kernel_is_sdpa_on_cpu():
    cpu = torch.device("cpu")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert choose_kernel(cpu, dtype, want_flash=True) == "sdpa"
        assert choose_kernel(cpu, dtype, want_flash=False) == "sdpa"
    assert make(flash_attention=True).attention_kernel == "sdpa"


requires_flash = pytest.mark.skipif(
    not (torch.cuda.is_available() and flash_attn_available()),
    reason="needs CUDA and flash-attn",
)


@pytest.mark.gpu
@requires_flash
def test_flash_matches_sdpa_in_bf16():
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("flash-attn 2 needs an Ampere or newer GPU")
    cuda = torch.device("cuda")
    assert choose_kernel(cuda, torch.bfloat16, want_flash=True) == "flash"
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 64, 32, device=cuda, dtype=torch.bfloat16) for _ in range(3))
    torch.testing.assert_close(
        causal_attention(q, k, v, "flash"),
        causal_attention(q, k, v, "sdpa"),
        rtol=2e-2,
        atol=2e-2,
    )
    last = q[:, :, -1:]  # the last position alone (`last_only`): no mask
    torch.testing.assert_close(
        causal_attention(last, k, v, "flash"),
        causal_attention(last, k, v, "sdpa"),
        rtol=2e-2,
        atol=2e-2,
    )

    model = make(flash_attention=True).to(cuda).eval()
    idx = tokens().to(cuda)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        flash = model(idx)
        assert model.attention_kernel == "flash"
        model.force_kernel = "sdpa"
        sdpa = model(idx)
    torch.testing.assert_close(flash.float(), sdpa.float(), rtol=5e-2, atol=5e-2)
