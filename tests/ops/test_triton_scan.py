"""Triton BK scan (resnet_bk_hf/ops/bk/triton/) against the float64 references.

Without CUDA the kernels run on the CPU through TRITON_INTERPRET=1 at tiny sizes (CI); with CUDA the same
checks run compiled on the GPU, plus GPU-size cases. Every check draws fresh random inputs (the `seed`
fixture), poisons every buffer the kernels write with NaN first (`poison_buffers`), and compares the forward
and every input gradient (a, hop, u, C, z, initial state) with the float64 reference. One algorithm each way
is tested: forward version 4 (sub-chunks as matrices) and backward version 3 (sequential walks); the tests of
earlier versions went with their kernels (commit 0faf570).
"""
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

triton = pytest.importorskip("triton")
if not CUDA and not INTERPRET:
    pytest.skip("no CUDA and TRITON_INTERPRET is off", allow_module_level=True)

from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from resnet_bk_hf.ops.bk import naive, recurrent  # noqa: E402
from resnet_bk_hf.ops.bk.scan_config import ScanConfig, default_config  # noqa: E402
from resnet_bk_hf.ops.bk.triton import KERNELS, causal_resolvent_scan_triton  # noqa: E402
from resnet_bk_hf.ops.bk.triton.launches import poison_buffers, record_launches  # noqa: E402

if INTERPRET != isinstance(KERNELS["g_scan"], InterpretedFunction):
    pytest.skip("the kernels were built for the other mode (interpreter / GPU) than the tests run in",
                allow_module_level=True)

DEVICE = "cuda" if CUDA else "cpu"
NAMES = ["a", "hop", "u", "c_re", "c_im", "z_re", "z_im", "g0", "y0"]


def make_inputs(B, N, H, P, K, *, a_scale=2.0, hop_frac=(0.2, 0.7), eta=(0.8, 1.3), with_state=True):
    """Random valid inputs in float64 on the CPU. hop is drawn as a fraction of eta_min per head."""
    z_re = -4.0 * torch.rand(H, K, dtype=torch.float64)
    z_im = eta[0] + (eta[1] - eta[0]) * torch.rand(H, K, dtype=torch.float64)
    eta_min = z_im.min(dim=-1).values                                   # (H,)
    lo, hi = hop_frac
    hop = (lo + (hi - lo) * torch.rand(B, N, H, dtype=torch.float64)) * eta_min
    a = -2.0 + a_scale * torch.randn(B, N, H, dtype=torch.float64)
    u = torch.randn(B, N, H, P, dtype=torch.float64)
    c_re = torch.randn(B, N, H, K, dtype=torch.float64)
    c_im = torch.randn(B, N, H, K, dtype=torch.float64)
    xs = [a, hop, u, c_re, c_im, z_re, z_im]
    if with_state:
        g0 = 0.3 * torch.randn(B, H, K, 2, dtype=torch.float64)
        g0[..., 1] = g0[..., 1].abs()                                  # Im g >= 0, as a carried state has
        y0 = torch.randn(B, H, K, P, 2, dtype=torch.float64)
        xs += [g0, y0]
    return xs


def rel(x, ref):
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def run_both(xs64, dtype, config=None, poison=True):
    """(outputs, grads) of the Triton scan in `dtype` and of the float64 recurrent reference."""
    with_state = len(xs64) == 9
    xs = [x.to(dtype) for x in xs64]
    # the reference sees exactly the rounded inputs the kernel sees
    ref_in = [x.double().requires_grad_() for x in xs]
    k_in = [x.to(DEVICE).requires_grad_() for x in xs]
    state_r = (ref_in[7], ref_in[8]) if with_state else None
    state_k = (k_in[7], k_in[8]) if with_state else None
    o_r, (g_r, y_r) = recurrent.causal_resolvent_scan_recurrent(*ref_in[:7], state_r)
    with poison_buffers(poison):
        o_k, (g_k, y_k) = causal_resolvent_scan_triton(*k_in[:7], state_k, config=config)
        w = [torch.randn_like(o_r), torch.randn_like(g_r), torch.randn_like(y_r)]
        w[0] = w[0].to(dtype).double()   # dL/do reaches the kernel in o's dtype: give the reference the same
        loss_r = (o_r * w[0]).sum() + (g_r * w[1]).sum() + (y_r * w[2]).sum()
        loss_k = ((o_k.float() * w[0].to(DEVICE, torch.float32)).sum() + (g_k * w[1].to(DEVICE, torch.float32)).sum()
                  + (y_k * w[2].to(DEVICE, torch.float32)).sum())
        gr_r = torch.autograd.grad(loss_r, ref_in)
        gr_k = torch.autograd.grad(loss_k, k_in)
    return (o_k, g_k, y_k), (o_r, g_r, y_r), gr_k, gr_r


def check(xs64, dtype, tol, config=None):
    (o_k, g_k, y_k), (o_r, g_r, y_r), gr_k, gr_r = run_both(xs64, dtype, config)
    assert o_k.dtype == dtype and o_k.shape == o_r.shape
    assert g_k.dtype == torch.float32 and y_k.dtype == torch.float32
    errs = {"o": rel(o_k, o_r), "gN": rel(g_k, g_r), "yN": rel(y_k, y_r)}
    for name, gk, gr in zip(NAMES, gr_k, gr_r):
        assert gk is not None, name
        assert gk.shape == gr.shape, name
        errs["d_" + name] = rel(gk, gr)
    for name, t in [("o", o_k), ("gN", g_k), ("yN", y_k)] + list(zip(NAMES, gr_k)):
        assert torch.isfinite(t).all(), f"{name} has NaN/inf (unwritten element or overflow)"
    # shown with `pytest -s`: the figures docs/benchmarks.md quotes come from these lines
    print(f"{dtype} worst relative error {max(errs.values()):.2e}: " + " ".join(f"{k}={v:.1e}" for k, v in errs.items()))
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"relative errors over {tol}: {bad} (all: {errs})"
    return errs


# Small blocks so that a few positions span several chunks, channel blocks and chunk-scan blocks: chunks of 16
# (one sub-chunk: tl.dot needs >= 16), chunk-scan blocks of 2 chunks, the backward's channels in blocks of 4
# (P = 6 splits them: atomic sums; P = 4 does not: plain stores into poisoned buffers), 2 persistent programs.
TINY = ScanConfig(block_t=16, block_sub=16, block_p=16, chunk_block=2, num_warps=1, bwd_block_p=4,
                  bwd_programs_per_sm=2)
# Chunks of 32 made of two sub-chunks of 16, forward and backward channel blocks of 16 (P = 20 splits them,
# P = 16 does not), K = 5 padded to 8 lanes.
TINY_SUB = ScanConfig(block_t=32, block_sub=16, block_p=16, chunk_block=2, num_warps=1, bwd_programs_per_sm=2)


def test_matches_float64_with_state_and_ragged_length(seed):
    # N = 37: not a multiple of the chunk (16) or the chunk-scan block (2 chunks); P = 6 over two backward
    # blocks of 4; K = 3 padded to 8 lanes.
    check(make_inputs(2, 37, 2, 6, 3), torch.float32, 1e-5, TINY)


def test_sub_chunks_ragged_with_state_split_channels(seed):
    """N = 77: two full chunks of two sub-chunks, then one sub-chunk and a ragged one; P = 20 splits the channels
    of the forward and the backward; forward and every gradient."""
    check(make_inputs(1, 77, 1, 20, 5), torch.float32, 1e-5, TINY_SUB)


def test_unsplit_channels_batch_two(seed):
    """One channel block each way (the backward's channel sums are plain stores into poisoned buffers), batch 2,
    two heads."""
    check(make_inputs(2, 70, 2, 16, 8), torch.float32, 1e-5, TINY_SUB)


def test_extreme_potentials_and_hopping_near_contraction_limit(seed):
    # |a| up to ~1e3 and hop within 2% of eta_min, no initial state (the factored W falls back entry by entry).
    xs = make_inputs(1, 21, 2, 4, 2, a_scale=300.0, hop_frac=(0.97, 0.999), with_state=False)
    xs[0][0, ::3] = 1e3 * torch.sign(torch.randn(7, 2, dtype=torch.float64))
    errs = check(xs, torch.float32, 1e-5, TINY)
    assert errs["o"] < 1e-5


def test_hopping_above_eta_non_contracting(seed):
    # The model's defaults allow hop > eta (|hop g| > 1 possible): chunk maps then grow inside a chunk,
    # but the resolvent bound |[(H - z)^-1]_ts| <= 1/eta keeps every composed map finite.
    xs = make_inputs(1, 45, 2, 4, 3, hop_frac=(2.0, 4.0), eta=(0.25, 0.5))
    check(xs, torch.float32, 1e-5, TINY)


def test_bf16_io(seed):
    check(make_inputs(1, 13, 1, 8, 2), torch.bfloat16, 1e-2, TINY)


# Expected in the interpreter (numpy) on hard inputs: the factored-W output pass computes its factors on every
# sub-chunk, overflowing on those whose log-decays span too many octaves, and marks those chunks; the fallback
# pass then recomputes exactly those entry by entry, so no overflowed value reaches o (the float64 checks below
# would fail if one did). The GPU does the same arithmetic silently.
FACTOR_OVERFLOW_IS_EXPECTED = pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning")


@FACTOR_OVERFLOW_IS_EXPECTED
@pytest.mark.parametrize("case", ["extremes", "above_eta", "zero_hop", "bf16"])
def test_sub_chunks_hard_inputs(seed, case):
    """|a| ~ 1e3 with hop at 0.97..0.999 eta (the chunk decays span hundreds of octaves), hop at 2..4 x eta
    (|c| > 1: the running log sums grow), hop exactly 0 at some positions (the log2 floor), bf16 IO."""
    dtype, tol = torch.float32, 1e-5
    if case == "extremes":
        xs = make_inputs(1, 40, 2, 16, 8, a_scale=300.0, hop_frac=(0.97, 0.999))
        xs[0][:, ::5] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::5]))
    elif case == "above_eta":
        xs = make_inputs(1, 40, 2, 16, 8, hop_frac=(2.0, 4.0))
    elif case == "zero_hop":
        xs = make_inputs(1, 40, 1, 16, 3)
        xs[1][:, 5] = 0.0
        xs[1][:, 20:23] = 0.0
    else:
        xs, dtype, tol = make_inputs(1, 45, 2, 16, 8), torch.bfloat16, 1e-2
    check(xs, dtype, tol, TINY_SUB)


@FACTOR_OVERFLOW_IS_EXPECTED
def test_factored_w_and_its_fallback(seed):
    """The output pass forms W as one dot of factors (`_w_factored`) in the sub-chunks whose log-decays span at
    most `w_factor_range` octaves, entry by entry elsewhere. Here the first chunk has moderate decays and the
    second |a| ~ 1e3 (thousands of octaves), so one call takes both forms; each is checked against float64.
    The launches show the two-launch path at the default range and one entry-by-entry launch at 0; the
    interpreter shows which form ran: with the range at 1 octave every sub-chunk falls back and o is bit for bit
    the entry-by-entry result; at the default it is not."""
    xs = make_inputs(1, 70, 1, 20, 5)
    xs[0][:, 32:64] = 1e3 * torch.sign(torch.randn_like(xs[0][:, 32:64]))
    check(xs, torch.float32, 1e-5, TINY_SUB)                 # forward and every gradient, default range
    xs32 = [x.to(torch.float32) for x in xs]
    o_ref = recurrent.causal_resolvent_scan_recurrent(*[x.double() for x in xs32[:7]],
                                                      (xs32[7].double(), xs32[8].double()))[0]
    outs, output_launches = {}, {}
    for rng in (0.0, 1.0, TINY_SUB.w_factor_range):
        cfg = ScanConfig(**{**vars(TINY_SUB), "w_factor_range": rng})
        inp = [x.to(DEVICE) for x in xs32]
        with torch.no_grad(), record_launches() as launches:
            outs[rng] = causal_resolvent_scan_triton(*inp[:7], (inp[7], inp[8]), config=cfg)[0]
        output_launches[rng] = [(r.pass_name, r.meta.get("WF", 0)) for r in launches if r.pass_name.startswith("output")]
        assert rel(outs[rng], o_ref) < 1e-5, rng
    assert TINY_SUB.w_factor_range == ScanConfig().w_factor_range == 120.0
    assert output_launches[0.0] == [("output", 0)]
    assert output_launches[1.0] == output_launches[120.0] == [("output", 1), ("output_fallback", 2)]
    if INTERPRET:
        assert torch.equal(outs[1.0], outs[0.0])
        assert not torch.equal(outs[120.0], outs[0.0])
        assert torch.equal(outs[120.0][:, 32:64], outs[0.0][:, 32:64])   # the |a| ~ 1e3 chunk fell back


def skip_passes(*names):
    """A `record_launches` skip predicate: hold back the launches of these passes."""
    return lambda launch: launch.pass_name in names


def test_poison_reaches_o_when_the_output_pass_is_skipped():
    """Skipping the output pass leaves o all NaN under the poison: the checks above can fail."""
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 40, 1, 16, 2, with_state=False)]
    with poison_buffers(), record_launches(skip=skip_passes("output", "output_fallback")) as launches:
        o, _ = causal_resolvent_scan_triton(*xs, config=TINY_SUB)
    assert torch.isnan(o).all()
    assert {r.pass_name for r in launches if not r.ran} == {"output", "output_fallback"}


def test_poison_reaches_the_gradients_when_the_main_backward_pass_is_skipped():
    """Skipping the backward's main pass leaves u_bar, c_bar, Dg and hop1 unwritten: with poison every input
    gradient that reads them is NaN (its sums are plain stores into uninitialised buffers when the channels
    are not split, so only the poison can show a missed position)."""
    xs = [x.to(DEVICE, torch.float32).requires_grad_() for x in make_inputs(1, 9, 1, 4, 2, with_state=False)]
    with poison_buffers(), record_launches(skip=skip_passes("bwd_main")):
        o, _ = causal_resolvent_scan_triton(*xs, config=TINY)
        grads = torch.autograd.grad(o.sum(), xs)
    for name, g in zip(NAMES, grads):
        if name in ("a", "hop", "u", "c_re", "c_im"):
            assert torch.isnan(g).all(), name


def test_launches_of_one_forward_and_backward():
    """The passes named in launches.py, in order, each once (the output pass twice with the factored W)."""
    xs = [x.to(DEVICE, torch.float32).requires_grad_() for x in make_inputs(1, 20, 1, 4, 2, with_state=False)]
    with record_launches() as launches:
        o, _ = causal_resolvent_scan_triton(*xs, config=TINY)
        torch.autograd.grad(o.sum(), xs)
    assert [r.pass_name for r in launches] == ["g_maps", "g_scan", "y_maps", "y_scan", "output", "output_fallback",
                                               "ybar_maps", "ybar_scan", "bwd_main", "gbar_maps", "gbar_scan",
                                               "g_final"]
    assert all(r.ran for r in launches)


def test_dot_precision_auto_follows_the_io_dtype():
    """"auto" (the default) runs the forward's dots as three TF32 products for float32 IO and in TF32 for bf16
    IO (the interpreter computes all exactly, so this checks the choice; the GPU float32 and bf16 checks bound
    its error)."""
    seen = set()
    for dtype in (torch.float32, torch.bfloat16):
        xs = [x.to(DEVICE, dtype) for x in make_inputs(1, 20, 1, 16, 2, with_state=False)]
        with record_launches() as launches:
            causal_resolvent_scan_triton(*xs, config=TINY_SUB)
        seen |= {(dtype, r.meta["PREC"]) for r in launches if "PREC" in r.meta}
    assert TINY_SUB.dot_precision == "auto"
    assert seen == {(torch.float32, "tf32x3"), (torch.bfloat16, "tf32")}


def test_model_with_triton_backend_matches_recurrent(seed):
    """A whole ResNet-BK model (default hopping mode) gives the same logits and gradients either way."""
    from conftest import tiny_config
    from resnet_bk_hf import ResNetBKForCausalLM
    model = ResNetBKForCausalLM(tiny_config(scan_backend="recurrent", num_hidden_layers=1))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mixer.in_proj.weight.normal_(0, 0.5)
    other = ResNetBKForCausalLM(tiny_config(scan_backend="triton", num_hidden_layers=1))
    other.load_state_dict(model.state_dict())
    assert all(layer.mixer.scan_backend == "triton" for layer in other.model.layers)
    other.to(DEVICE)
    ids = torch.randint(0, 97, (1, 9))
    ref = model(ids, labels=ids)
    tri = other(ids.to(DEVICE), labels=ids.to(DEVICE))
    ref.loss.backward()
    tri.loss.backward()
    assert rel(tri.logits, ref.logits) < 1e-5
    for (name, p_ref), p_tri in zip(model.named_parameters(), other.parameters()):
        assert rel(p_tri.grad, p_ref.grad) < 1e-4, name


def test_matches_naive_definition_length_one(seed):
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 1, 2, 4, 2)]
    o, (g, y) = causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]), config=TINY)
    ref = [x.double().cpu() for x in xs]
    o_r, (g_r, y_r) = naive.causal_resolvent_scan_naive(*ref[:7], (ref[7], ref[8]))
    assert rel(o, o_r) < 1e-5 and rel(g, g_r) < 1e-5 and rel(y, y_r) < 1e-5


def test_causal(seed):
    """o before position s does not move when the inputs from s on change (up to rounding: whether a sub-chunk's
    W is factored depends on all its rows)."""
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 40, 1, 4, 2)]
    s = 21
    o = causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]), config=TINY)[0]
    ys = [x.clone() for x in xs]
    for i in (0, 2, 3, 4):                   # a, u, c_re, c_im from s on
        ys[i][:, s:] = torch.randn_like(ys[i][:, s:])
    ys[1][:, s:] = ys[1][:, s:].flip(1)      # hop from s on, reordered
    o2 = causal_resolvent_scan_triton(*ys[:7], (ys[7], ys[8]), config=TINY)[0]
    assert rel(o2[:, :s], o[:, :s]) < 1e-6
    assert rel(o2[:, s:], o[:, s:]) > 1e-2


def test_backward_with_its_own_channel_block_and_warps(seed):
    from dataclasses import replace
    check(make_inputs(2, 37, 2, 8, 3), torch.float32, 1e-5, replace(TINY, bwd_block_p=2, bwd_num_warps=2))


def test_float64_is_refused():
    xs = make_inputs(1, 7, 2, 3, 2)
    with pytest.raises(TypeError, match=r"float32, bfloat16 or float16.*causal_resolvent_scan.*float64"):
        causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]))
    xs32 = [x.to(DEVICE, torch.float32) for x in xs]
    with pytest.raises(TypeError, match="float64"):           # a float64 state alone is refused too
        causal_resolvent_scan_triton(*xs32[:7], (xs[7].to(DEVICE), xs32[8]))


def test_empty_sequence_returns_the_state():
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(2, 0, 3, 4, 2)]
    o, (g, y) = causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]))
    assert o.shape == (2, 0, 3, 4) and torch.equal(g, xs[7]) and torch.equal(y, xs[8])
    o, (g, y) = causal_resolvent_scan_triton(*xs[:7])
    assert o.shape == (2, 0, 3, 4) and not g.any() and not y.any() and y.shape == (2, 3, 2, 4, 2)


@pytest.mark.skipif(CUDA, reason="checks CPU tensors")
def test_cpu_tensors_without_the_interpreter_are_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    xs = [x.float() for x in make_inputs(1, 3, 1, 2, 2, with_state=False)]
    with pytest.raises(RuntimeError, match="CUDA tensors.*TRITON_INTERPRET=1"):
        causal_resolvent_scan_triton(*xs)


def test_config_is_validated():
    for kw in ({"block_sub": 8}, {"block_t": 32, "block_sub": 64}):
        with pytest.raises(ValueError, match="ScanConfig.block_sub"):
            ScanConfig(**kw)
    with pytest.raises(ValueError, match="ScanConfig.dot_precision"):
        ScanConfig(dot_precision="fp16")
    for bad in (-1.0, 500.0, True, "120"):
        with pytest.raises(ValueError, match="ScanConfig.w_factor_range"):
            ScanConfig(w_factor_range=bad)
    for field, bad in [("bwd_programs_per_sm", 0), ("bwd_programs_per_sm", 2.0), ("bwd_stages", 0),
                       ("bwd_stages", True)]:
        with pytest.raises(ValueError, match=f"ScanConfig.{field} must be"):
            ScanConfig(**{field: bad})
    for field, bad in [("block_t", 12), ("block_p", 0), ("bwd_block_p", 3), ("bwd_num_warps", -4), ("scan_tile", 500)]:
        with pytest.raises(ValueError, match=f"ScanConfig.{field} must be a power of two"):
            ScanConfig(**{field: bad})
    cfg = ScanConfig()
    cfg.block_sub = 8                   # edited after construction: caught at the call
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 3, 1, 2, 2, with_state=False)]
    with pytest.raises(ValueError, match="block_sub"):
        causal_resolvent_scan_triton(*xs, config=cfg)


def test_default_config():
    """The tuned blocks (docs/benchmarks.md): chunks of 64 in sub-chunks of 16, a whole head of channels per
    forward program, the backward's blocks of its own, 8 persistent programs per SM."""
    cfg = default_config(64, 8)
    assert (cfg.block_t, cfg.block_sub, cfg.block_p, cfg.chunk_block, cfg.num_warps) == (64, 16, 64, 16, 4)
    assert (cfg.bwd_block_p, cfg.bwd_num_warps, cfg.bwd_programs_per_sm, cfg.bwd_stages) == (64, 1, 8, 1)
    assert (cfg.dot_precision, cfg.w_factor_range, cfg.scan_tile, cfg.scan_num_warps) == ("auto", 120.0, 512, None)
    assert default_config(64, 16).bwd_block_p == 32 and default_config(20, 5).block_p == 32


# ----------------------------------------------------------------------------- GPU sizes

gpu = pytest.mark.skipif(not CUDA, reason="needs CUDA")


@gpu
@pytest.mark.parametrize("B,N,H,P,K", [(2, 4099, 4, 64, 8), (1, 1000, 3, 48, 5), (3, 777, 2, 32, 16)])
def test_gpu_default_config_float32(seed, B, N, H, P, K):
    check(make_inputs(B, N, H, P, K), torch.float32, 1e-5, default_config(P, K))


@gpu
def test_gpu_extremes_default_config(seed):
    xs = make_inputs(2, 3001, 4, 64, 8, a_scale=300.0, hop_frac=(0.97, 0.999))
    xs[0][:, ::5] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::5]))
    check(xs, torch.float32, 1e-5, default_config(64, 8))


@gpu
def test_gpu_bf16(seed):
    check(make_inputs(2, 2050, 4, 64, 8), torch.bfloat16, 1e-2, default_config(64, 8))


@gpu
@pytest.mark.parametrize("L,bwd_bp,warps,stages,per_sm", [(64, 32, 1, 3, 1), (32, 16, 4, 1, 3), (16, 64, 2, 2, 40)])
def test_gpu_backward_blocks_split_channels_pipelined_and_few_programs(seed, L, bwd_bp, warps, stages, per_sm):
    """The backward off its default blocks: long chunks, split channels (atomic sums), pipelined loads, few
    persistent programs (long work queues per scratch slot) or more than can be resident at once."""
    cfg = ScanConfig(block_t=L, block_p=32, chunk_block=16, num_warps=4, bwd_block_p=bwd_bp, bwd_num_warps=warps,
                     bwd_programs_per_sm=per_sm, bwd_stages=stages)
    xs = make_inputs(2, 5003, 3, 64, 8, hop_frac=(0.5, 0.999))
    xs[0][:, ::7] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::7]))
    check(xs, torch.float32, 1e-5, cfg)
