"""Triton BK scan (kernels/triton_scan.py) against the float64 references.

Without CUDA the kernels run on the CPU through TRITON_INTERPRET=1 at tiny sizes (CI);
with CUDA the same checks run compiled on the GPU, plus GPU-size cases.
Every check draws fresh random inputs (the `seed` fixture), poisons every buffer the
kernels write with NaN first, and compares the forward and every input gradient
(a, hop, u, C, z, initial state) with the float64 reference. The checks run for both in-chunk time loops
of the forward (`ScanConfig.time_loop`: "scan" = version 1, "sequential" = version 2) and, for the gradients,
both backward loops (`ScanConfig.bwd_loop`: "scan" = version 1, "sequential" = version 3); the version-4
forward ("chunked": sub-chunks as matrices) has its own checks below, with the version-3 backward.
"""
import importlib
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

from resnet_bk_hf.ops.bk import naive, recurrent  # noqa: E402
from resnet_bk_hf.ops.bk.triton import scan as ts  # noqa: E402

from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

if INTERPRET and not isinstance(ts._g_maps_kernel, InterpretedFunction):
    ts = importlib.reload(ts)   # imported earlier without the interpreter: rebuild the kernels
if not INTERPRET and isinstance(ts._g_maps_kernel, InterpretedFunction):
    pytest.skip("kernels were built for the interpreter but CUDA tensors are in use", allow_module_level=True)

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
    old = ts.POISON
    ts.POISON = poison
    try:
        o_k, (g_k, y_k) = ts.causal_resolvent_scan_triton(*k_in[:7], state_k, config=config)
        w = [torch.randn_like(o_r), torch.randn_like(g_r), torch.randn_like(y_r)]
        w[0] = w[0].to(dtype).double()   # dL/do reaches the kernel in o's dtype: give the reference the same
        loss_r = (o_r * w[0]).sum() + (g_r * w[1]).sum() + (y_r * w[2]).sum()
        loss_k = ((o_k.float() * w[0].to(DEVICE, torch.float32)).sum() + (g_k * w[1].to(DEVICE, torch.float32)).sum()
                  + (y_k * w[2].to(DEVICE, torch.float32)).sum())
        gr_r = torch.autograd.grad(loss_r, ref_in)
        gr_k = torch.autograd.grad(loss_k, k_in)
    finally:
        ts.POISON = old
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


# Tiny blocks so that a few positions span several chunks, channel blocks and chunk-scan blocks.
TINY = ts.ScanConfig(block_t=8, block_p=4, chunk_block=2, num_warps=1, time_loop="scan", bwd_loop="scan")
# The same blocks with the version-2 forward (sequential time loop inside a chunk; backward as version 1).
TINY_SEQ = ts.ScanConfig(block_t=8, block_p=4, chunk_block=2, num_warps=1, time_loop="sequential",
                         bwd_loop="scan")
# Every CPU correctness check runs with both in-chunk time loops.
both_loops = pytest.mark.parametrize("cfg", [TINY, TINY_SEQ], ids=["scan", "sequential"])
# Version 3 backward (sequential walks, persistent programs with scratch slots) after the version-2 forward.
# block_p 4: P = 6 or 8 splits the channels (atomic sums), P = 4 does not (plain stores into poisoned buffers).
TINY_V3 = ts.ScanConfig(block_t=8, block_p=4, chunk_block=2, num_warps=1, time_loop="sequential",
                        bwd_loop="sequential", bwd_programs_per_sm=2)
# The gradient checks also run with the version-3 backward.
all_versions = pytest.mark.parametrize("cfg", [TINY, TINY_SEQ, TINY_V3], ids=["scan", "sequential", "v3-bwd"])


# Version 4 forward (sub-chunks as matrices): chunks of 32 made of two sub-chunks of 16 (tl.dot needs >= 16),
# channel blocks of 16 (P = 20 splits them), K = 5 padded to 8 lanes; version-3 backward after it.
TINY_V4 = ts.ScanConfig(block_t=32, block_sub=16, block_p=16, chunk_block=2, num_warps=1, time_loop="chunked",
                        bwd_loop="sequential", bwd_programs_per_sm=2)
# The same with the version-5 backward (sub-chunks as matrices too; the second sub-chunk of a chunk rebuilds
# its starting y through the first). P = 20 splits the channels (atomic sums), P = 16 does not.
TINY_V5 = ts.ScanConfig(**{**vars(TINY_V4), "bwd_loop": "chunked"})
chunked_versions = pytest.mark.parametrize("cfg", [TINY_V4, TINY_V5], ids=["v3-bwd", "v5-bwd"])


@chunked_versions
def test_chunked_forward_matches_float64_ragged_with_state(seed, cfg):
    """N = 77: two full chunks, then one sub-chunk and a ragged one; forward and every gradient."""
    check(make_inputs(1, 77, 1, 20, 5), torch.float32, 1e-5, cfg)


@pytest.mark.parametrize("g_stored,w3d", [(True, False), (False, True), (True, True)],
                         ids=["g_stored", "w3d", "g_stored-w3d"])
def test_chunked_forward_stored_g_and_3d_w(seed, g_stored, w3d):
    """The version-4 knobs that change the kernel's path: g_t written once and read back (`_g_write_kernel`),
    and W formed in one (L, L, K) tile; ragged N with state, split channels, then |a| ~ 1e3."""
    cfg = ts.ScanConfig(**{**vars(TINY_V4), "g_stored": g_stored, "w3d": w3d})
    check(make_inputs(1, 77, 1, 20, 5), torch.float32, 1e-5, cfg)
    xs = make_inputs(1, 40, 2, 16, 8, a_scale=300.0, hop_frac=(0.97, 0.999))
    xs[0][:, ::5] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::5]))
    check(xs, torch.float32, 1e-5, cfg)


def test_chunked_forward_factored_w_and_its_fallback(seed):
    """Version 4's output pass forms W as one dot of factors (`_w_factored`) in the sub-chunks whose log-decays
    span at most `w_factor_range` octaves, entry by entry elsewhere. Here the first chunk has moderate decays and
    the second |a| ~ 1e3 (thousands of octaves), so one run takes both paths; each is checked against float64,
    and the interpreter shows which path ran: with the range at 1 octave every sub-chunk falls back and o is
    bit for bit the entry-by-entry result; at the default it is not."""
    xs = make_inputs(1, 70, 1, 20, 5)
    xs[0][:, 32:64] = 1e3 * torch.sign(torch.randn_like(xs[0][:, 32:64]))
    check(xs, torch.float32, 1e-5, TINY_V4)                 # forward and every gradient, default range
    xs32 = [x.to(torch.float32) for x in xs]
    o_ref = recurrent.causal_resolvent_scan_recurrent(*[x.double() for x in xs32[:7]],
                                                      (xs32[7].double(), xs32[8].double()))[0]
    outs = {}
    for rng in (0.0, 1.0, TINY_V4.w_factor_range):
        cfg = ts.ScanConfig(**{**vars(TINY_V4), "w_factor_range": rng})
        inp = [x.to(DEVICE) for x in xs32]
        with torch.no_grad():
            outs[rng] = ts.causal_resolvent_scan_triton(*inp[:7], (inp[7], inp[8]), config=cfg)[0]
        assert rel(outs[rng], o_ref) < 1e-5, rng
    assert TINY_V4.w_factor_range == 120.0
    if INTERPRET:
        assert torch.equal(outs[1.0], outs[0.0])
        assert not torch.equal(outs[120.0], outs[0.0])
        assert torch.equal(outs[120.0][:, 32:64], outs[0.0][:, 32:64])   # the |a| ~ 1e3 chunk fell back


def test_chunked_backward_unsplit_channels_batch_two(seed):
    """Version 5 with one channel block (plain stores into poisoned buffers), batch 2, two heads."""
    check(make_inputs(2, 70, 2, 16, 8), torch.float32, 1e-5, TINY_V5)


@chunked_versions
@pytest.mark.parametrize("case", ["extremes", "above_eta", "zero_hop", "bf16"])
def test_chunked_forward_hard_inputs(seed, case, cfg):
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
    check(xs, dtype, tol, cfg)


def test_chunked_forward_output_pass_is_what_writes_o():
    """Skipping version 4's output pass (MODE 1) leaves o all NaN under the poison: its checks can fail."""
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 40, 1, 16, 2, with_state=False)]
    old_kernel = ts._y_chunk_mm_kernel
    ts.POISON = True
    try:
        class Skip:
            def __getitem__(self, grid):
                return lambda *args, **kw: None if kw.get("MODE") == 1 else old_kernel[grid](*args, **kw)
        ts._y_chunk_mm_kernel = Skip()
        o, _ = ts.causal_resolvent_scan_triton(*xs, config=TINY_V4)
        assert torch.isnan(o).all()
    finally:
        ts._y_chunk_mm_kernel = old_kernel
        ts.POISON = False


def test_poison_is_detected_by_the_v5_backward_checks():
    """The same for version 5's main pass (one channel block: plain stores)."""
    _skipped_main_pass_poisons_the_gradients("_bwd_chunk_mm_kernel", TINY_V5, 40, 16)


def test_chunked_dot_precision_auto_follows_the_io_dtype():
    """"auto" (the default) runs the forward's dots as three TF32 products for float32 IO (float32 FMA in the
    version-5 backward) and in TF32 for bf16 IO (the interpreter computes all exactly, so this checks the
    choice; the GPU float32 and bf16 checks bound its error)."""
    seen = []
    old_kernel = ts._y_chunk_mm_kernel

    class Record:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen.append((args[2].dtype, kw["PREC"]))
                return old_kernel[grid](*args, **kw)
            return launch
    ts._y_chunk_mm_kernel = Record()
    try:
        for dtype in (torch.float32, torch.bfloat16):
            xs = [x.to(DEVICE, dtype) for x in make_inputs(1, 20, 1, 16, 2, with_state=False)]
            ts.causal_resolvent_scan_triton(*xs, config=TINY_V4)
    finally:
        ts._y_chunk_mm_kernel = old_kernel
    assert TINY_V4.dot_precision == "auto"
    assert set(seen) == {(torch.float32, "tf32x3"), (torch.bfloat16, "tf32")}
    assert ts._dot_precision(TINY_V4, torch.float32, backward=True) == "ieee"


def test_chunked_config_is_validated():
    for kw in ({"block_sub": 8}, {"block_t": 32, "block_sub": 64}):
        with pytest.raises(ValueError, match="block_sub"):
            ts.ScanConfig(time_loop="chunked", **kw)
    with pytest.raises(ValueError, match="dot_precision"):
        ts.ScanConfig(dot_precision="fp16")
    for bad in (-1.0, 500.0, True, "120"):
        with pytest.raises(ValueError, match="w_factor_range"):
            ts.ScanConfig(w_factor_range=bad)
    with pytest.raises(ValueError, match="block_sub"):
        ts.ScanConfig(time_loop="sequential", bwd_loop="chunked", block_sub=8)
    cfg = ts.default_config(64, 8, "chunked", "sequential")
    assert cfg.time_loop == "chunked" and cfg.block_sub <= cfg.block_t and cfg.block_p == 64
    cfg = ts.default_config(64, 8, "chunked", "chunked")
    assert cfg.bwd_loop == "chunked" and cfg.block_sub <= cfg.block_t and cfg.bwd_block_p == 64


@all_versions
def test_matches_float64_with_state_and_ragged_length(seed, cfg):
    # N = 19: not a multiple of the chunk (8) or the chunk-scan block (2 chunks); P = 6 over two blocks of 4;
    # K = 3 padded to 4 lanes.
    check(make_inputs(2, 19, 2, 6, 3), torch.float32, 1e-5, cfg)


@all_versions
def test_extreme_potentials_and_hopping_near_contraction_limit(seed, cfg):
    # |a| up to ~1e3 and hop within 2% of eta_min, no initial state.
    xs = make_inputs(1, 21, 2, 4, 2, a_scale=300.0, hop_frac=(0.97, 0.999), with_state=False)
    xs[0][0, ::3] = 1e3 * torch.sign(torch.randn(7, 2, dtype=torch.float64))
    errs = check(xs, torch.float32, 1e-5, cfg)
    assert errs["o"] < 1e-5


@all_versions
def test_hopping_above_eta_non_contracting(seed, cfg):
    # The model's defaults allow hop > eta (|hop g| > 1 possible): chunk maps then grow inside a chunk,
    # but the resolvent bound |[(H - z)^-1]_ts| <= 1/eta keeps every composed map finite.
    xs = make_inputs(1, 45, 2, 4, 3, hop_frac=(2.0, 4.0), eta=(0.25, 0.5))
    check(xs, torch.float32, 1e-5, cfg)


def test_model_with_triton_backend_matches_recurrent(seed):
    """A whole ResNet-BK model (default hopping mode) gives the same logits and gradients either way."""
    import copy
    from conftest import tiny_config
    from resnet_bk_hf import ResNetBKForCausalLM
    model = ResNetBKForCausalLM(tiny_config(scan_backend="recurrent", num_hidden_layers=1))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mixer.in_proj.weight.normal_(0, 0.5)
    other = copy.deepcopy(model)
    other.config.scan_backend = "triton"
    for layer in other.model.layers:
        layer.mixer.config = other.config
    other.to(DEVICE)
    ids = torch.randint(0, 97, (1, 9))
    ref = model(ids, labels=ids)
    tri = other(ids.to(DEVICE), labels=ids.to(DEVICE))
    ref.loss.backward()
    tri.loss.backward()
    assert rel(tri.logits, ref.logits) < 1e-5
    for (name, p_ref), p_tri in zip(model.named_parameters(), other.parameters()):
        assert rel(p_tri.grad, p_ref.grad) < 1e-4, name


@all_versions
def test_bf16_io(seed, cfg):
    check(make_inputs(1, 13, 1, 8, 2), torch.bfloat16, 1e-2, cfg)


def test_time_loop_is_validated():
    with pytest.raises(ValueError, match="scan.*sequential"):
        ts.ScanConfig(time_loop="seq")
    cfg = ts.ScanConfig()
    cfg.time_loop = "unrolled"          # edited after construction: caught at the call
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 3, 1, 2, 2, with_state=False)]
    with pytest.raises(ValueError, match="time_loop"):
        ts.causal_resolvent_scan_triton(*xs, config=cfg)
    assert ts.ScanConfig().time_loop == "chunked" and ts.default_config(64, 8).time_loop == "chunked"


@pytest.mark.parametrize("cfg,kernel", [(TINY, "_y_chunk_kernel"), (TINY_SEQ, "_y_chunk_seq_kernel")],
                         ids=["scan", "sequential"])
def test_poison_is_detected(cfg, kernel):
    """The NaN poison really reaches the outputs when a kernel skips a write (guards the other tests)."""
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 9, 1, 4, 2, with_state=False)]
    old_kernel = getattr(ts, kernel)
    ts.POISON = True
    try:
        class Skip:          # launch nothing for the output pass (MODE 1)
            def __getitem__(self, grid):
                def launch(*args, **kw):
                    if kw.get("MODE") == 1:
                        return None
                    return old_kernel[grid](*args, **kw)
                return launch
        setattr(ts, kernel, Skip())
        o, _ = ts.causal_resolvent_scan_triton(*xs, config=cfg)
        assert torch.isnan(o).all()
    finally:
        setattr(ts, kernel, old_kernel)
        ts.POISON = False


def _skipped_main_pass_poisons_the_gradients(kernel, cfg, N, P):
    """With `kernel` (a backward main pass) launching nothing and the poison on, every input gradient that reads
    its outputs (u_bar, c_bar, Dg, hop1) is NaN: its plain stores into uninitialised buffers are checked."""
    xs = [x.to(DEVICE, torch.float32).requires_grad_() for x in make_inputs(1, N, 1, P, 2, with_state=False)]
    old_kernel = getattr(ts, kernel)
    ts.POISON = True
    try:
        class Skip:
            def __getitem__(self, grid):
                return lambda *args, **kw: None
        setattr(ts, kernel, Skip())
        o, _ = ts.causal_resolvent_scan_triton(*xs, config=cfg)
        grads = torch.autograd.grad(o.sum(), xs)
        for name, g in zip(NAMES, grads):
            if name in ("a", "hop", "u", "c_re", "c_im"):
                assert torch.isnan(g).all(), name
    finally:
        setattr(ts, kernel, old_kernel)
        ts.POISON = False


def test_poison_is_detected_by_the_v3_backward_checks():
    """Skipping version 3's main pass leaves u_bar, c_bar, Dg and hop1 unwritten: with poison every input
    gradient that reads them is NaN (the v3 sums are plain stores into uninitialised buffers when the
    channels are not split, so only the poison can show a missed position)."""
    _skipped_main_pass_poisons_the_gradients("_bwd_main_seq_kernel", TINY_V3, 9, 4)


def test_bwd_loop_and_its_knobs_are_validated():
    with pytest.raises(ValueError, match="ScanConfig.bwd_loop.*scan.*sequential"):
        ts.ScanConfig(bwd_loop="reverse")
    for field, bad in [("bwd_programs_per_sm", 0), ("bwd_programs_per_sm", 2.0), ("bwd_stages", 0),
                       ("bwd_stages", True)]:
        with pytest.raises(ValueError, match=f"ScanConfig.{field} must be"):
            ts.ScanConfig(**{field: bad})
    cfg = ts.ScanConfig()
    cfg.bwd_loop = "seq"                # edited after construction: caught at the call
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 3, 1, 2, 2, with_state=False)]
    with pytest.raises(ValueError, match="bwd_loop"):
        ts.causal_resolvent_scan_triton(*xs, config=cfg)
    # version 3 is the default since the H100 timed it (docs/benchmarks.md); version 1 stays selectable
    assert ts.ScanConfig().bwd_loop == "sequential" and ts.default_config(64, 8).bwd_loop == "sequential"
    assert ts.default_config(64, 8, bwd_loop="scan").bwd_loop == "scan"
    assert ts.default_config(64, 8, bwd_loop="scan").block_t == 16


def test_float64_falls_back_to_exact_recurrent(seed):
    xs = make_inputs(1, 7, 2, 3, 2)
    o, (g, y) = ts.causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]))
    o_r, (g_r, y_r) = naive.causal_resolvent_scan_naive(*xs[:7], (xs[7], xs[8]))
    assert o.dtype == torch.float64
    assert rel(o, o_r) < 1e-12 and rel(g, g_r) < 1e-12 and rel(y, y_r) < 1e-12


@both_loops
def test_matches_naive_definition_length_one(seed, cfg):
    xs = [x.to(DEVICE, torch.float32) for x in make_inputs(1, 1, 2, 4, 2)]
    o, (g, y) = ts.causal_resolvent_scan_triton(*xs[:7], (xs[7], xs[8]), config=cfg)
    ref = [x.double().cpu() for x in xs]
    o_r, (g_r, y_r) = naive.causal_resolvent_scan_naive(*ref[:7], (ref[7], ref[8]))
    assert rel(o, o_r) < 1e-5 and rel(g, g_r) < 1e-5 and rel(y, y_r) < 1e-5


# ----------------------------------------------------------------------------- GPU sizes

gpu = pytest.mark.skipif(not CUDA, reason="needs CUDA")
# (forward time loop, backward loop): v1 / v1, v2 / v1, v2 / v3
gpu_loops = pytest.mark.parametrize("time_loop,bwd_loop", [("scan", "scan"), ("sequential", "scan"),
                                                           ("sequential", "sequential"), ("chunked", "sequential"),
                                                           ("chunked", "chunked")],
                                    ids=["scan-scan", "sequential-scan", "sequential-sequential",
                                         "chunked-sequential", "chunked-chunked"])


@gpu
@gpu_loops
@pytest.mark.parametrize("B,N,H,P,K", [(2, 4099, 4, 64, 8), (1, 1000, 3, 48, 5), (3, 777, 2, 32, 16)])
def test_gpu_default_config_float32(seed, B, N, H, P, K, time_loop, bwd_loop):
    check(make_inputs(B, N, H, P, K), torch.float32, 1e-5, ts.default_config(P, K, time_loop, bwd_loop))


@gpu
@gpu_loops
def test_gpu_extremes_default_config(seed, time_loop, bwd_loop):
    xs = make_inputs(2, 3001, 4, 64, 8, a_scale=300.0, hop_frac=(0.97, 0.999))
    xs[0][:, ::5] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::5]))
    check(xs, torch.float32, 1e-5, ts.default_config(64, 8, time_loop, bwd_loop))


@gpu
@gpu_loops
def test_gpu_bf16(seed, time_loop, bwd_loop):
    check(make_inputs(2, 2050, 4, 64, 8), torch.bfloat16, 1e-2, ts.default_config(64, 8, time_loop, bwd_loop))


@gpu
@pytest.mark.parametrize("L,bwd_bp,warps,stages,per_sm", [(64, 32, 1, 3, 1), (32, 16, 4, 1, 3), (16, 64, 2, 2, 40)])
def test_gpu_v3_blocks_split_channels_pipelined_and_few_programs(seed, L, bwd_bp, warps, stages, per_sm):
    """Version 3 off its default blocks: long chunks, split channels (atomic sums), pipelined loads, few
    persistent programs (long work queues per scratch slot) or more than can be resident at once."""
    cfg = ts.ScanConfig(block_t=L, block_p=32, chunk_block=16, num_warps=4, time_loop="sequential",
                        bwd_block_p=bwd_bp, bwd_num_warps=warps, bwd_loop="sequential", bwd_programs_per_sm=per_sm,
                        bwd_stages=stages)
    xs = make_inputs(2, 5003, 3, 64, 8, hop_frac=(0.5, 0.999))
    xs[0][:, ::7] = 1e3 * torch.sign(torch.randn_like(xs[0][:, ::7]))
    check(xs, torch.float32, 1e-5, cfg)


@pytest.mark.parametrize("cfg", [TINY_SEQ], ids=["sequential"])
def test_backward_with_its_own_channel_block_and_warps(seed, cfg):
    from dataclasses import replace
    check(make_inputs(2, 37, 2, 8, 3), torch.float32, 1e-5, replace(cfg, bwd_block_p=2, bwd_num_warps=2))


def test_scan_config_block_sizes_are_validated():
    for field, bad in [("block_t", 12), ("block_p", 0), ("bwd_block_p", 3), ("bwd_num_warps", -4)]:
        with pytest.raises(ValueError, match=f"ScanConfig.{field} must be a power of two"):
            ts.ScanConfig(**{field: bad})
