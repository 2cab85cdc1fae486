"""Benchmark of the fused Triton BK scan on one GPU (issue 3; docs/design.md 2.6).

    PYTHONPATH=. python benchmarks/kernel_bench.py [OUT.json] [--quick] [--no-check] [--no-grid]
        [--grid-n=N1,N2,..] [--grid-io=float32,bfloat16] [--no-compare] [--no-reference] [--small-n]
        [--compile-check] [--host] [--profile] [--sweep] [--sweep-no-fwd] [--sweep-l=16,32,64] [--sweep-n=N]
        [--sweep-chunked[=fb]] [--sweep-wf] [--deadline-s=S]
    PYTHONPATH=. python benchmarks/kernel_bench.py --ptxas[=90]     (no GPU needed)

OUT.json (default results/kernel_bench.json) is rewritten after every section and row, so a run stopped at its
time limit keeps what it measured. Every timing is of the library's default path: `default_config(64, K)`
(forward version 4, backward version 3; ops/bk/triton/__init__.py), unless a sweep says otherwise. Sections:
  * copy: device-to-device copy bandwidth (bytes read + written) measured in this run = the floor;
  * check (off: --no-check): GPU correctness of the kernel vs the float64 recurrent reference (forward + all
    grads), every kernel-written buffer poisoned with NaN first, ragged N;
  * grid (off: --no-grid): forward and forward+backward time (triton.testing.do_bench, median) over (batch, N,
    d_model, K), the minimal bytes each must move, achieved bytes/s as a fraction of the copy bandwidth, peak
    memory; --grid-n replaces the grid by (1, N, 1024, 8) rows, float32 or those of --grid-io;
  * compare (off: --no-compare; N = 2k..64k, batch 1, d_model 1024): BK Triton float32 and bf16, the PyTorch
    recurrent reference and a torch.compile'd step loop (left out by --no-reference), mambapy's parallel-scan
    selective scan (state 16), causal SDPA (flash); up to 16k also BK and flash forward + backward replayed from
    CUDA graphs (the GPU's time; eagerly, BK is host-bound there);
  * small-n (--small-n): BK forward + backward against causal flash at N = 2k..16k, eager and replayed from a
    CUDA graph (the GPU's time without the launch cost), over a few chunk lengths;
  * compile-check (--compile-check): whether torch.compile(fullgraph=True) traces the scan forward + backward,
    its difference from eager and its time (default and reduce-overhead modes), N = 4096;
  * host (--host): GPU kernel time vs the host's time to issue one call (Python + launches) at small N and at
    one layer of the 10M comparison model, and cProfile's costliest host functions;
  * profile (--profile): CUDA time per kernel of one forward + backward (default blocks; after a sweep also
    its fastest blocks);
  * sweep (--sweep; B = 1, N = 262144 or --sweep-n, d_model 1024, K = 8, f32): per chunk length L (--sweep-l),
    forward blocks (block_p, num_warps; left out by --sweep-no-fwd) and the backward alone over its blocks
    (bwd_block_p, bwd_num_warps, bwd_stages), then the fastest backward blocks with several
    bwd_programs_per_sm; every backward row records the registers and spilled bytes of its main pass;
  * sweep-chunked (--sweep-chunked; same shape): the forward over chunk length, sub-chunk length and warps,
    then dot precisions and chunk-scan tiles on the fastest, then forward + backward of the fastest;
    =fb: only forward + backward of the default config with other chunk-level scans and backward stages;
  * sweep-wf (--sweep-wf; same shape): forward and forward + backward with W formed by one dot of factors
    (`ScanConfig.w_factor_range`, the default) or entry by entry (w_factor_range=0), over sub-chunk length and
    dot precision, and the same on inputs whose decays are too steep for the factored form (|a| ~ 1e3: every
    sub-chunk falls back), so the cost of the range check shows.
--deadline-s=S: the sweeps and small-n skip (and list) the configs they have not reached S seconds after the
start, so a run under a time limit still ends with its profile and JSON. A table of the grid is printed again
at the end.
--ptxas[=ARCH] only compiles the backward's main pass (the sweep's block shapes at K = 8) and the forward's
output pass for sm_ARCH (default 90 = Hopper) with Triton's bundled ptxas and prints registers and spilled bytes
per thread: a static check that runs on a machine without a GPU (TRITON_INTERPRET must be off).
Head size P = 64 channels (H = d_model / 64 heads). Times in ms. Earlier kernel versions and their sweeps
(--time-loop, --bwd-loop, --sweep-v5): docs/history/kernels.md and commit 0faf570.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from resnet_bk_hf.ops.bk.recurrent import causal_resolvent_scan_recurrent  # noqa: E402
from resnet_bk_hf.ops.bk.scan_config import ScanConfig, default_config, next_pow2  # noqa: E402
from resnet_bk_hf.ops.bk.triton import KERNELS, causal_resolvent_scan_triton as bk_scan  # noqa: E402
from resnet_bk_hf.ops.bk.triton.launches import poison_buffers  # noqa: E402

DEV = "cuda"
P_HEAD = 64
GRID_N_D_MODEL = 1024   # d_model of the --grid-n rows


def bench(fn, rep=200, warmup=25):
    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")


def peak_mem(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20   # MiB above the live inputs


def copy_bandwidth():
    n = 2**28  # 1 GiB of float32
    x = torch.randn(n, device=DEV)
    y = torch.empty_like(x)
    t = bench(lambda: y.copy_(x))
    del x, y
    return 2 * n * 4 / (t * 1e-3)


def bk_inputs(B, N, d, K, dtype, grad=False):
    H = d // P_HEAD
    g = torch.Generator(device=DEV).manual_seed(0)
    z_re = (-4.0 * torch.rand(H, K, device=DEV, generator=g))
    z_im = (0.8 + 0.5 * torch.rand(H, K, device=DEV, generator=g))
    hop = (0.2 + 0.5 * torch.rand(B, N, H, device=DEV, generator=g)) * 0.8
    a = -2.0 + 2.0 * torch.randn(B, N, H, device=DEV, generator=g)
    u = torch.randn(B, N, H, P_HEAD, device=DEV, generator=g)
    c_re = torch.randn(B, N, H, K, device=DEV, generator=g)
    c_im = torch.randn(B, N, H, K, device=DEV, generator=g)
    xs = [x.to(dtype) for x in (a, hop, u, c_re, c_im)] + [z_re, z_im]
    if grad:
        xs = [x.requires_grad_() for x in xs]
    return xs


def bk_bytes(B, N, d, K, dtype):
    """Fewest bytes: forward reads a, hop, u, C and writes o; backward reads those and dL/do and writes
    the gradients of a, hop, u, C (z and the state are negligible)."""
    e = torch.finfo(dtype).bits // 8
    H = d // P_HEAD
    fwd = B * N * H * (2 + P_HEAD + 2 * K + P_HEAD) * e
    bwd = B * N * H * ((2 + P_HEAD + 2 * K + P_HEAD) + (2 + P_HEAD + 2 * K)) * e
    return fwd, fwd + bwd


def default_cfg(K=8, **changes):
    """The library's default config for heads of P_HEAD channels and K shifts, with these changes."""
    return ScanConfig(**{**vars(default_config(P_HEAD, K)), **changes})


def kernel_usage(fn, **constexprs):
    """Registers and spilled bytes per thread of the variant of Triton kernel `fn` compiled in this process
    with these constexprs (and num_warps), or None when it cannot be found (e.g. another Triton version)."""
    warps = constexprs.pop("num_warps")
    try:
        for cache in (c[0] for c in fn.device_caches.values()):
            for k in cache.values():
                k = k.result() if hasattr(k, "result") else k
                consts = {fn.arg_names[i[0]]: v for i, v in k.src.constants.items() if len(i) == 1}
                if k.metadata.num_warps == warps and all(consts.get(n) == v for n, v in constexprs.items()):
                    return {"regs": k.n_regs, "spill_bytes": k.n_spills}
    except Exception:  # noqa: BLE001 - Triton internals differ between versions
        return None
    return None


def main_pass_usage(cfg, K=8):
    """kernel_usage of the backward's main pass (KERNELS["bwd_main"]) for cfg."""
    BP = min(cfg.bwd_block_p or cfg.block_p, next_pow2(P_HEAD))
    return kernel_usage(KERNELS["bwd_main"], L=cfg.block_t, BK=next_pow2(K), BP=BP, STAGES=cfg.bwd_stages,
                        num_warps=cfg.bwd_num_warps or cfg.num_warps)


def time_bk(B, N, d, K, dtype, cfg=None):
    xs = bk_inputs(B, N, d, K, dtype, grad=True)
    f = lambda: bk_scan(*xs, config=cfg)[0]
    with torch.no_grad():
        t_f = bench(lambda: bk_scan(*[x.detach() for x in xs], config=cfg))
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV, dtype=dtype)

    def fb():   # autograd.grad: no accumulation into .grad inside the timed region
        return torch.autograd.grad(f(), xs, do)
    t_fb = bench(fb, rep=300)
    m_f = peak_mem(lambda: bk_scan(*[x.detach() for x in xs], config=cfg))
    m_fb = peak_mem(fb)
    ok = all(torch.isfinite(g).all().item() for g in fb())
    del xs, do
    torch.cuda.empty_cache()
    return t_f, t_fb, m_f, m_fb, ok


CHECKS = {
    "f32 ragged N=4099 state": (2, 4099, 4, 8, 2.0, 0.7, torch.float32, 1e-5),
    "f32 |a|~1e3, hop~0.99 eta": (1, 3001, 4, 8, 300.0, 0.999, torch.float32, 1e-5),
    "bf16 N=2050": (2, 2050, 4, 8, 2.0, 0.7, torch.bfloat16, 1e-2),
}


def correctness(checks=CHECKS, configs=None):
    """Forward + every gradient vs the float64 recurrent reference, poisoned outputs, ragged N.

    The reference is computed once per case; the kernel runs with the default config, or, with configs
    ({label: changes to the default config}), once per entry of configs instead."""
    out = {}
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))
    for name, (B, N, H, K, a_scale, hop_hi, dtype, tol) in checks.items():
        z_re = -4 * torch.rand(H, K, dtype=torch.float64)
        z_im = 0.8 + 0.5 * torch.rand(H, K, dtype=torch.float64)
        hop = (hop_hi - 0.03 + 0.03 * torch.rand(B, N, H, dtype=torch.float64)) * z_im.min(-1).values \
            if hop_hi > 0.9 else (0.2 + 0.5 * torch.rand(B, N, H, dtype=torch.float64)) * z_im.min(-1).values
        a = -2 + a_scale * torch.randn(B, N, H, dtype=torch.float64)
        if a_scale > 100:
            a[:, ::5] = 1e3 * torch.sign(torch.randn_like(a[:, ::5]))
        xs = [a, hop, torch.randn(B, N, H, P_HEAD, dtype=torch.float64),
              torch.randn(B, N, H, K, dtype=torch.float64), torch.randn(B, N, H, K, dtype=torch.float64), z_re, z_im]
        g0 = 0.3 * torch.randn(B, H, K, 2, dtype=torch.float64)
        g0[..., 1] = g0[..., 1].abs()
        xs += [g0, torch.randn(B, H, K, P_HEAD, 2, dtype=torch.float64)]
        xs = [x.to(dtype) for x in xs[:5]] + [x.float() for x in xs[5:]]
        ref_in = [x.double().requires_grad_() for x in xs]
        k_in = [x.to(DEV).requires_grad_() for x in xs]
        o_r, (g_r, y_r) = causal_resolvent_scan_recurrent(*ref_in[:7], (ref_in[7], ref_in[8]))
        w = [torch.randn_like(o_r), torch.randn_like(g_r), torch.randn_like(y_r)]
        w[0] = w[0].to(dtype).double()   # dL/do reaches the kernel in o's dtype
        gr = torch.autograd.grad((o_r * w[0]).sum() + (g_r * w[1]).sum() + (y_r * w[2]).sum(), ref_in)
        rel = lambda x, r: ((x.detach().double().cpu() - r.detach()).norm() / r.detach().norm()).item()
        runs = {"default": {}} if configs is None else configs
        for label, kw in runs.items():
            cfg = default_cfg(K, **kw)
            key = f"{name} [{label}]"
            with poison_buffers():
                o_k, (g_k, y_k) = bk_scan(*k_in[:7], (k_in[7], k_in[8]), config=cfg)
                gk = torch.autograd.grad((o_k.float() * w[0].float().to(DEV)).sum()
                                         + (g_k * w[1].float().to(DEV)).sum()
                                         + (y_k * w[2].float().to(DEV)).sum(), k_in)
            errs = {"o": rel(o_k, o_r), "gN": rel(g_k, g_r), "yN": rel(y_k, y_r)}
            for n, x, r in zip(["a", "hop", "u", "c_re", "c_im", "z_re", "z_im", "g0", "y0"], gk, gr):
                errs["d_" + n] = rel(x, r)
            finite = all(torch.isfinite(t).all().item() for t in [o_k, g_k, y_k, *gk])
            worst = max(errs.values())
            out[key] = {"changes": kw, "max_rel_err": worst, "tol": tol, "finite": finite,
                        "pass": finite and worst <= tol, "errs": errs}
            print(f"check {key:49s} max rel err {worst:.2e} (tol {tol:g}) finite={finite} "
                  f"{'PASS' if out[key]['pass'] else 'FAIL'}", flush=True)
    return out


# ----------------------------------------------------------------------------- comparisons


def time_recurrent(N, d, K, cap_s=20.0):
    B = 1
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    t0 = time.time()
    o, _ = causal_resolvent_scan_recurrent(*xs)
    torch.cuda.synchronize()
    t_f = (time.time() - t0) * 1e3
    t0 = time.time()
    o, _ = causal_resolvent_scan_recurrent(*xs)
    o.sum().backward()
    torch.cuda.synchronize()
    t_fb = (time.time() - t0) * 1e3
    return t_f, t_fb


def make_compiled_step():
    @torch.compile(dynamic=False)
    def step(g, yr, yi, a_t, b_t, u_t, cr_t, ci_t, zr, zi):
        # complex as real pairs; g: (gr, gi) stacked last
        gr, gi = g[..., 0], g[..., 1]
        wr = a_t[..., None] - zr - b_t[..., None] ** 2 * gr
        wi = -zi - b_t[..., None] ** 2 * gi
        den = wr * wr + wi * wi
        gr, gi = wr / den, -wi / den
        rr = u_t[:, :, None, :] - b_t[..., None, None] * yr
        ri = -b_t[..., None, None] * yi
        yr, yi = gr[..., None] * rr - gi[..., None] * ri, gr[..., None] * ri + gi[..., None] * rr
        o = (cr_t[..., None] * yr + ci_t[..., None] * yi).sum(2)
        return torch.stack([gr, gi], -1), yr, yi, o
    return step


def time_compiled(N, d, K, step):
    B = 1
    a, hop, u, cr, ci, zr, zi = bk_inputs(B, N, d, K, torch.float32, grad=True)
    H = d // P_HEAD

    def run():
        g = torch.zeros(B, H, K, 2, device=DEV)
        yr = torch.zeros(B, H, K, P_HEAD, device=DEV)
        yi = torch.zeros_like(yr)
        outs = []
        for t in range(N):
            g, yr, yi, o = step(g, yr, yi, a[:, t], hop[:, t], u[:, t], cr[:, t], ci[:, t], zr, zi)
            outs.append(o)
        return torch.stack(outs, 1)
    run().sum().backward()  # compile forward and backward outside the timed calls
    torch.cuda.synchronize()
    t0 = time.time()
    run()
    torch.cuda.synchronize()
    t_f = (time.time() - t0) * 1e3
    t0 = time.time()
    run().sum().backward()
    torch.cuda.synchronize()
    t_fb = (time.time() - t0) * 1e3
    return t_f, t_fb


def time_mamba(N, d, dstate=16):
    from mambapy.pscan import pscan
    B = 1
    x = torch.randn(B, N, d, device=DEV, requires_grad=True)
    delta = torch.nn.functional.softplus(torch.randn(B, N, d, device=DEV)).requires_grad_()
    A = (-torch.exp(torch.randn(d, dstate, device=DEV))).requires_grad_()
    Bm = torch.randn(B, N, dstate, device=DEV, requires_grad=True)
    Cm = torch.randn(B, N, dstate, device=DEV, requires_grad=True)

    def sscan():   # mambapy MambaBlock.selective_scan (D term omitted)
        deltaA = torch.exp(delta.unsqueeze(-1) * A)
        BX = delta.unsqueeze(-1) * Bm.unsqueeze(2) * x.unsqueeze(-1)
        hs = pscan(deltaA, BX)
        return (hs @ Cm.unsqueeze(-1)).squeeze(3)
    with torch.no_grad():
        t_f = bench(sscan, rep=100)
        m_f = peak_mem(sscan)
    go = torch.randn(B, N, d, device=DEV)

    def fb():
        return torch.autograd.grad(sscan(), [x, delta, A, Bm, Cm], go)
    t_fb = bench(fb, rep=100)
    m_fb = peak_mem(fb)
    return t_f, t_fb, m_f, m_fb


def time_sdpa(N, d, dtype=torch.bfloat16):
    B, Hh = 1, d // 64
    q, k, v = (torch.randn(B, Hh, N, 64, device=DEV, dtype=dtype, requires_grad=True) for _ in range(3))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    f = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        with torch.no_grad():
            t_f = bench(f, rep=100)
            m_f = peak_mem(f)
        go = torch.randn(B, Hh, N, 64, device=DEV, dtype=dtype)
        fb = lambda: torch.autograd.grad(f(), [q, k, v], go)
        t_fb = bench(fb, rep=100)
        m_fb = peak_mem(fb)
    return t_f, t_fb, m_f, m_fb


def bench_graphed(fn, rep=200):
    """do_bench median of fn replayed from a CUDA graph: the GPU's time without the host's launch cost (what
    torch.cuda.make_graphed_callables or torch.compile(mode="reduce-overhead") give a training step)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):      # compile and warm up outside the capture, on a side stream
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    t = bench(graph.replay, rep=rep)
    del graph
    return t


def flash_fwdbwd(N, d, dtype=torch.bfloat16):
    """One causal flash-attention forward + backward (batch 1, d // 64 heads of 64) as a closure on its own inputs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(1, d // 64, N, 64, device=DEV, dtype=dtype, requires_grad=True) for _ in range(3))
    go = torch.randn_like(q)

    def fb():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return torch.autograd.grad(o, [q, k, v], go)
    return fb


def bk_fwdbwd(B, N, d, K, dtype, cfg=None):
    """One BK scan forward + backward (autograd.grad, nothing accumulated) as a closure on its own inputs."""
    xs = bk_inputs(B, N, d, K, dtype, grad=True)
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV, dtype=dtype)
    return lambda: torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do)


# Small N (--small-n): blocks tried for BK against flash, forward + backward replayed from CUDA graphs. Shorter
# chunks give more programs and shorter sequential walks inside a chunk, longer chunk-level scans.
SMALL_N = [2048, 4096, 8192, 16384]
SMALL_N_CFGS = [{}, dict(block_t=32, block_sub=16), dict(block_t=32, block_sub=32), dict(block_t=16, block_sub=16),
                dict(block_t=32, block_sub=16, bwd_programs_per_sm=32),
                dict(block_t=16, block_sub=16, bwd_programs_per_sm=32),
                dict(block_t=16, block_sub=16, chunk_block=64, scan_tile=4096)]


def small_n(save, res, deadline=float("inf"), d=1024, K=8):
    """BK forward + backward against causal flash at N = 2k..16k, eager (host-bound there) and replayed from
    CUDA graphs (GPU time), over SMALL_N_CFGS; float32 and bf16 BK IO. Returns the rows."""
    rows = []
    res["small_n"] = rows
    print(f"\nsmall N, batch 1, d_model {d}, K {K}: forward + backward ms (median); graph = replayed from a CUDA "
          f"graph; flash bf16 head 64", flush=True)
    for N in SMALL_N:
        flash_fb = flash_fwdbwd(N, d)
        flash = {"eager": bench(flash_fb), "graph": bench_graphed(flash_fb)}
        row = {"N": N, "flash_bf16_fwdbwd_ms": flash, "bk": []}
        print(f"N={N:>6} flash bf16: eager {flash['eager']:.3f}  graph {flash['graph']:.3f}", flush=True)
        for io in (torch.float32, torch.bfloat16):
            for kw in SMALL_N_CFGS:
                label = " ".join(f"{a}={b}" for a, b in kw.items()) or "default"
                if time.time() > deadline:
                    print(f"  {label}: skipped (deadline)", flush=True)
                    continue
                cfg = default_cfg(K, **kw)
                fb = bk_fwdbwd(1, N, d, K, io, cfg)   # the same inputs for every config (bk_inputs is seeded)
                try:
                    t = {"graph": bench_graphed(fb)}
                    if not kw:
                        t["eager"] = bench(fb)
                except Exception as e:  # noqa: BLE001
                    print(f"  {label}: {repr(e)[:300]}", flush=True)
                    continue
                r = {"io": str(io).split(".")[-1], "changes": kw, "config": vars(cfg), **{f"{m}_ms": x for m, x in
                     t.items()}, "flash_over_bk_graph": flash["graph"] / t["graph"]}
                row["bk"].append(r)
                print(f"  BK {r['io']:>8} {label:<60} graph {t['graph']:7.3f}" +
                      (f"  eager {t['eager']:7.3f}" if "eager" in t else "") +
                      f"   flash/BK (graphs) {r['flash_over_bk_graph']:.2f}", flush=True)
                del fb
        rows.append(row)
        save()
        del flash_fb
        torch.cuda.empty_cache()
    return rows


def compile_check(N=4096, d=1024, K=8):
    """Does torch.compile trace the Triton scan (forward + backward) without a graph break, and at what time
    with mode="reduce-overhead" (CUDA graphs)? Returns a dict (error text when it fails)."""
    xs = bk_inputs(1, N, d, K, torch.float32, grad=True)
    do = torch.randn(1, N, d // P_HEAD, P_HEAD, device=DEV)
    out = {}
    ref = torch.autograd.grad(bk_scan(*xs)[0], xs, do)   # eager
    for mode in ("default", "reduce-overhead"):
        try:
            torch._dynamo.reset()
            f = torch.compile(lambda *x: bk_scan(*x)[0], fullgraph=True, mode=mode)
            fb = lambda: torch.autograd.grad(f(*xs), xs, do)
            t0 = time.time()
            got = fb()
            err = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(got, ref))
            out[mode] = {"first_call_s": time.time() - t0, "fwdbwd_ms": bench(fb), "max_rel_diff_vs_eager": err}
        except Exception as e:  # noqa: BLE001
            out[mode] = {"error": repr(e)[:500]}
        print(f"torch.compile(fullgraph=True, mode={mode!r}) N={N}: {out[mode]}", flush=True)
    return out


# ----------------------------------------------------------------------------- tuning


SWEEP_SHAPE = (1, 262144, 1024, 8)
SWEEP_FWD = [(16, 4), (32, 4), (64, 8), (16, 2)]            # (block_p, num_warps) of the forward
# The backward: (bwd_block_p, bwd_num_warps, bwd_stages), the same at every L (its registers do not grow with L).
# 1-warp programs keep every channel and shift reduction inside a warp (no barrier per step).
SWEEP_BWD = [(64, 8, 1), (64, 4, 1), (64, 4, 3), (64, 2, 1), (64, 1, 1), (32, 1, 1), (32, 1, 3), (32, 2, 1),
             (16, 1, 1)]
# bwd_programs_per_sm tried on the fastest backward blocks (None = min(32, 64 // warps)): fewer programs keep the
# scratch slots (L x K x channel-block complex each) in L2 but hide less latency.
SWEEP_BWD_PROGRAMS = [2, 4, 8, 16, 32]   # 32: the most one-warp programs an SM holds (for short N)


def sweep_configs(save, res, block_ts=(16, 32, 64), fwd=True, deadline=float("inf")):
    """Forward and backward timed separately per chunk length L = block_t.

    The forward and the backward share L (the backward restarts from the forward's chunk-boundary
    states) but may use different channel blocks and warps (ScanConfig.bwd_block_p / bwd_num_warps).
    Returns the rows; res["sweep_best"] gets the fastest backward."""
    B, N, d, K = SWEEP_SHAPE
    out = []
    res["sweep"] = out
    print(f"\nsweep B={B} N={N} d={d} K={K} f32: ms (median); bwd rows: main-pass registers / spilled bytes",
          flush=True)

    skipped = []
    res["sweep_skipped_at_deadline"] = skipped

    def time_bwd(cfg, xs, do, label):
        if time.time() > deadline:
            skipped.append(label.strip())
            print(f"  {label}: skipped (deadline)", flush=True)
            return None
        try:
            o = bk_scan(*xs, config=cfg)[0]
            t = bench(lambda: torch.autograd.grad(o, xs, do, retain_graph=True), rep=100)
            del o
        except Exception as e:  # noqa: BLE001
            print(f"  {label}: {repr(e)[:200]}", flush=True)
            return None
        use = main_pass_usage(cfg, K) or {}
        out.append({"pass": "bwd", "block_t": cfg.block_t, "block_p": cfg.bwd_block_p, "num_warps": cfg.bwd_num_warps,
                    "bwd_stages": cfg.bwd_stages, "bwd_programs_per_sm": cfg.bwd_programs_per_sm, "ms": t,
                    "main_regs": use.get("regs"), "main_spill_bytes": use.get("spill_bytes")})
        print(f"  {label}: {t:8.3f}   regs {use.get('regs', '?')} spill {use.get('spill_bytes', '?')}", flush=True)
        return t

    def bwd_cfg(L, bp, nw, stages=1, programs=None):
        return default_cfg(K, block_t=L, bwd_block_p=bp, bwd_num_warps=nw, bwd_stages=stages,
                           bwd_programs_per_sm=programs)

    best = None
    for L in block_ts:
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        det = [x.detach() for x in xs]
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for bp, nw in (SWEEP_FWD if fwd else ()):
            label = f"fwd L={L:>3} bp={bp:>3} nw={nw}"
            if time.time() > deadline:
                skipped.append(label)
                continue
            try:
                cfg = default_cfg(K, block_t=L, block_p=bp, num_warps=nw)
                with torch.no_grad():
                    t = bench(lambda: bk_scan(*det, config=cfg), rep=100)
            except Exception as e:  # noqa: BLE001
                print(f"  {label}: {repr(e)[:200]}", flush=True)
                continue
            out.append({"pass": "fwd", "block_t": L, "block_p": bp, "num_warps": nw, "ms": t})
            print(f"  {label}: {t:8.3f}", flush=True)
        for bp, nw, st in SWEEP_BWD:
            t = time_bwd(bwd_cfg(L, bp, nw, st), xs, do, f"bwd L={L:>3} bp={bp:>3} nw={nw} stages={st}")
            if t is not None and (best is None or t < best[0]):
                best = (t, {"block_t": L, "bwd_block_p": bp, "bwd_num_warps": nw, "bwd_stages": st})
        save()
        del xs, det, do
        torch.cuda.empty_cache()
    if best is not None:
        c = best[1]
        L = c["block_t"]
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for programs in SWEEP_BWD_PROGRAMS:
            cfg = bwd_cfg(L, c["bwd_block_p"], c["bwd_num_warps"], c["bwd_stages"], programs)
            t = time_bwd(cfg, xs, do, f"bwd L={L:>3} bp={c['bwd_block_p']:>3} nw={c['bwd_num_warps']} "
                                      f"stages={c['bwd_stages']} programs/SM={programs}")
            if t is not None and t < best[0]:
                best = (t, {**c, "bwd_programs_per_sm": programs})
        del xs, do
        torch.cuda.empty_cache()
        res["sweep_best"] = {"ms": best[0], **best[1]}
        print(f"  fastest backward: {best[0]:.3f} ms with {best[1]}", flush=True)
    if skipped:
        print(f"  deadline: skipped {len(skipped)} configs (listed in sweep_skipped_at_deadline)", flush=True)
    save()
    return out


# The forward (--sweep-chunked): block_t, block_sub, num_warps swept with the default dot precision; the fastest
# then with the other dot precisions and chunk-scan tiles (chunk_block, scan_tile, scan_num_warps).
# (A first sweep on the H200, 2026-12-01, over L 64/128/256 x sub 16/32/64 x 4/8 warps: 8 warps always slower;
# benchmarks/results/h200_v4_sweep1.log.)
SWEEP_CHUNKED = [dict(block_t=L, block_sub=LS, num_warps=4) for L in (64, 256) for LS in (16, 32)]
SWEEP_CHUNKED_SCAN = [(16, 2048, 4), (64, 4096, 8)]


# forward + backward of the default config at SWEEP_SHAPE with these changes (chunk-level scans, backward stages)
SWEEP_CHUNKED_FWDBWD = [{}, dict(chunk_block=64, scan_tile=4096, scan_num_warps=8),
                   dict(chunk_block=32, scan_tile=2048, scan_num_warps=4),
                   dict(chunk_block=128, scan_tile=8192, scan_num_warps=8), dict(bwd_stages=2), dict(bwd_stages=3)]


def sweep_chunked_fwdbwd(save, res, base, deadline=float("inf"), K=8):
    B, N, d, _ = SWEEP_SHAPE
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
    rows = []
    res["sweep_chunked_fwdbwd_default"] = rows
    print(f"\nforward + backward, default config with changes, B={B} N={N} d={d} K={K} f32: ms (median)",
          flush=True)
    for kw in SWEEP_CHUNKED_FWDBWD:
        if time.time() > deadline:
            print(f"  {kw}: skipped (deadline)", flush=True)
            continue
        cfg = ScanConfig(**{**vars(base), **kw})
        t = bench(lambda: torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do), rep=100)
        rows.append({"changes": kw, "fwdbwd_ms": t})
        print(f"  f+b default {kw or '(as is)'}: {t:8.3f}", flush=True)
        save()
    del xs, do
    torch.cuda.empty_cache()
    return None


def sweep_chunked(save, res, deadline=float("inf"), K=8, fb_only=False):
    """Forward alone at SWEEP_SHAPE over SWEEP_CHUNKED, then forward + backward (the backward at the same chunk length)
    of the fastest forward and of the fastest at block_t = 64 (the default)."""
    B, N, d, _ = SWEEP_SHAPE
    base = default_config(P_HEAD, K)
    if fb_only:       # forward + backward of the default with other chunk scans and backward stages only
        return sweep_chunked_fwdbwd(save, res, base, deadline)
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    det = [x.detach() for x in xs]
    rows = []
    res["sweep_chunked"] = rows
    print(f"\nsweep forward B={B} N={N} d={d} K={K} f32: ms (median)", flush=True)

    def time_fwd(cfg, label):
        if time.time() > deadline:
            print(f"  {label}: skipped (deadline)", flush=True)
            return None
        try:
            with torch.no_grad():
                t = bench(lambda: bk_scan(*det, config=cfg), rep=100)
        except Exception as e:  # noqa: BLE001
            print(f"  {label}: {repr(e)[:300]}", flush=True)
            return None
        bf, _ = bk_bytes(B, N, d, K, torch.float32)
        rows.append({"pass": "fwd", **{k: getattr(cfg, k) for k in ("block_t", "block_sub", "num_warps",
                     "dot_precision", "chunk_block", "scan_tile", "scan_num_warps")}, "ms": t,
                     "frac_copy": bf / (t * 1e-3) / res["copy_bytes_per_s"]})
        print(f"  {label}: {t:8.3f}  ({100 * rows[-1]['frac_copy']:.1f}% copy)", flush=True)
        save()
        return t

    def cfg_of(**kw):
        return ScanConfig(**{**vars(base), **kw})

    best, best64 = None, None
    for kw in SWEEP_CHUNKED:
        cfg = cfg_of(**kw)
        t = time_fwd(cfg, "fwd " + " ".join(f"{k}={v}" for k, v in kw.items()) + f" dot {cfg.dot_precision}")
        if t is not None and (best is None or t < best[0]):
            best = (t, cfg)
        if t is not None and cfg.block_t == 64 and (best64 is None or t < best64[0]):
            best64 = (t, cfg)
    if best is not None:
        for prec in ("ieee", "tf32x3", "tf32"):
            cfg = cfg_of(**{**vars(best[1]), "dot_precision": prec})
            time_fwd(cfg, f"fwd best blocks, dot {prec}")
        for cb, tile, snw in SWEEP_CHUNKED_SCAN:
            cfg = cfg_of(**{**vars(best[1]), "chunk_block": cb, "scan_tile": tile, "scan_num_warps": snw})
            t = time_fwd(cfg, f"fwd best blocks, chunk scan cb={cb} tile={tile} warps={snw}")
            if t is not None and t < best[0]:
                best = (t, cfg)
    del det
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
    fb_rows = []
    res["sweep_chunked_fwdbwd"] = fb_rows
    for name, pick in (("fastest forward", best), ("fastest forward at block_t 64", best64)):
        if pick is None or time.time() > deadline:
            continue
        default_scan = {"chunk_block": base.chunk_block, "scan_tile": base.scan_tile, "scan_num_warps": None}
        tuned = any(getattr(pick[1], k) != v for k, v in default_scan.items())
        for scan_kw in ({}, default_scan) if tuned else ({},):   # with the swept chunk scans, then the default
            cfg = cfg_of(**{**vars(pick[1]), **scan_kw})
            t = bench(lambda: torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do),
                      rep=100)
            fb_rows.append({"name": name, "config": vars(cfg), "fwdbwd_ms": t})
            print(f"  f+b {name}: {t:8.3f} ms  {vars(cfg)}", flush=True)
            save()
    res["sweep_chunked_best"] = vars(best[1]) if best else None
    del xs, do
    torch.cuda.empty_cache()
    return best[1] if best else None


# --sweep-wf: (label, changes to the default config); each timed with w_factor_range = 0 and at its default
SWEEP_WF = [("default", {}), ("sub 16", dict(block_sub=16)), ("8 warps", dict(num_warps=8)),
            ("sub 16, 8 warps", dict(block_sub=16, num_warps=8)), ("tf32x3", dict(dot_precision="tf32x3")),
            ("sub 16, tf32x3", dict(block_sub=16, dot_precision="tf32x3"))]


def sweep_wf(save, res, deadline=float("inf"), K=8):
    """Forward and forward + backward at SWEEP_SHAPE, W factored (default) vs entry by entry, over SWEEP_WF;
    then both on |a| ~ 1e3 inputs (every sub-chunk spans too many octaves, so the factored form falls back)."""
    B, N, d, _ = SWEEP_SHAPE
    rows = []
    res["sweep_wf"] = rows
    base = default_config(P_HEAD, K)
    print(f"\nsweep factored W (output pass) B={B} N={N} d={d} K={K} f32: ms (median) forward, forward + backward",
          flush=True)
    for inputs in ("random", "|a|~1e3"):
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        if inputs != "random":
            with torch.no_grad():
                xs[0].copy_(1e3 * torch.sign(torch.randn_like(xs[0])))
        det = [x.detach() for x in xs]
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for label, kw in SWEEP_WF if inputs == "random" else SWEEP_WF[:1]:
            for wf in (0.0, base.w_factor_range):
                cfg = ScanConfig(**{**vars(base), **kw, "w_factor_range": wf})
                name = f"{inputs:>8} {label:<14} w_factor_range={wf:5.1f}"
                if time.time() > deadline:
                    print(f"  {name}: skipped (deadline)", flush=True)
                    continue
                try:
                    with torch.no_grad():
                        t_f = bench(lambda: bk_scan(*det, config=cfg), rep=100)
                    t_fb = bench(lambda: torch.autograd.grad(bk_scan(*xs, config=cfg)[0],
                                                             xs, do), rep=50)
                except Exception as e:  # noqa: BLE001
                    print(f"  {name}: {repr(e)[:300]}", flush=True)
                    continue
                use = kernel_usage(KERNELS["y_chunk"], LS=cfg.block_sub, MODE=1, WF=1 if wf else 0,
                                   num_warps=cfg.num_warps) or {}
                rows.append({"inputs": inputs, "label": label, "config": vars(cfg), "fwd_ms": t_f, "fwdbwd_ms": t_fb,
                             "out_regs": use.get("regs"), "out_spill_bytes": use.get("spill_bytes")})
                print(f"  {name}: fwd {t_f:8.3f}  f+b {t_fb:8.3f}   output pass regs {use.get('regs', '?')} "
                      f"spill {use.get('spill_bytes', '?')}", flush=True)
                save()
        del xs, det, do
        torch.cuda.empty_cache()
    if time.time() < deadline:      # the error of each config against float64 (forward + every gradient)
        f32 = {k: v for k, v in CHECKS.items() if v[6] == torch.float32}
        configs = {f"{label}, w_factor_range={wf:g}": {**kw, "w_factor_range": wf}
                   for label, kw in SWEEP_WF for wf in (0.0, base.w_factor_range)}
        res["sweep_wf_check"] = correctness(f32, configs=configs)


def best_sweep_config(res, K=8):
    """The fastest backward of the sweep as a ScanConfig (forward: default blocks at that L)."""
    c = res.get("sweep_best")
    if not c:
        return None
    return default_cfg(K, **{k: v for k, v in c.items() if k != "ms"})


def profile_kernels(cfgs):
    """CUDA time per kernel of one forward + backward (torch.profiler), to see where the time goes."""
    from torch.profiler import ProfilerActivity, profile
    B, N, d, K = SWEEP_SHAPE
    out = {}
    for name, cfg in cfgs.items():
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for _ in range(2):   # compile + warm up
            torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do)
            torch.cuda.synchronize()
        rows = sorted(((e.key, e.device_time_total / 1e3, e.count) for e in prof.key_averages()
                       if e.device_time_total > 0), key=lambda r: -r[1])
        out[name] = {"config": vars(cfg), "main_pass": main_pass_usage(cfg, K),
                     "kernels": [{"kernel": k, "ms": ms, "calls": c} for k, ms, c in rows]}
        print(f"\nprofile {name} {cfg}: CUDA ms per kernel, one fwd+bwd at B={B} N={N} d={d} K={K}")
        print(f"  total {sum(ms for _, ms, _ in rows):.3f} ms; main pass {out[name]['main_pass']}")
        for k, ms, c in rows[:14]:
            print(f"  {ms:9.3f} ms  x{c:<3} {k[:90]}")
        del xs, do
        torch.cuda.empty_cache()
    return out


HOST_SHAPES = [(1, 512, 1024, 8), (1, 4096, 1024, 8), (1, 16384, 1024, 8), (32, 512, 384, 8)]


def host_overhead(shapes=HOST_SHAPES, calls=20, repeats=5):
    """Where the small-N time goes: GPU kernel time (profiler sum) vs the host's time to issue one call.

    host ms = CPU wall time of `calls` back-to-back calls with no synchronisation, per call (min over
    `repeats`); the launch queue holds them all, so this is the Python + launch cost alone. When it exceeds
    the GPU time, the timed figure (do_bench) is the host's. The last shape is one layer of the 10M
    comparison model (32 x 512 tokens, d_model 384). cProfile names the host's costliest functions."""
    import cProfile
    import pstats
    from torch.profiler import ProfilerActivity, profile
    cfg = default_config(P_HEAD, 8)
    rows = []
    print("\nhost overhead (float32, default blocks): ms per call; gpu = CUDA kernel time of one call")
    print(f"{'B':>3} {'N':>7} {'d':>5} | {'fwd gpu':>8} {'fwd host':>8} {'fwd timed':>9} | "
          f"{'f+b gpu':>8} {'f+b host':>8} {'f+b timed':>9}")
    for B, N, d, K in shapes:
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        fwd = lambda: bk_scan(*[x.detach() for x in xs], config=cfg)
        fb = lambda: torch.autograd.grad(bk_scan(*xs, config=cfg)[0], xs, do)
        r = {"B": B, "N": N, "d_model": d, "K": K}
        for name, fn in (("fwd", fwd), ("fwdbwd", fb)):
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn()
                torch.cuda.synchronize()
            r[name + "_gpu_ms"] = sum(e.device_time_total for e in prof.key_averages()) / 1e3
            host = []
            for _ in range(repeats):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                host.append((time.perf_counter() - t0) / calls * 1e3)
                torch.cuda.synchronize()
            r[name + "_host_ms"] = min(host)
            r[name + "_timed_ms"] = bench(fn)
        if (B, N, d, K) == shapes[-1]:
            prof_py = cProfile.Profile()
            prof_py.enable()
            for _ in range(calls):
                fb()
            prof_py.disable()
            torch.cuda.synchronize()
            st = pstats.Stats(prof_py)
            top = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:18]    # by own time
            r["cprofile_fwdbwd_top_own_ms_per_call"] = [
                {"function": f"{k[0].split('/')[-1]}:{k[1]}({k[2]})", "calls_per_call": v[1] / calls,
                 "own_ms": v[2] / calls * 1e3, "cum_ms": v[3] / calls * 1e3} for k, v in top]
        rows.append(r)
        print(f"{B:>3} {N:>7} {d:>5} | {r['fwd_gpu_ms']:8.3f} {r['fwd_host_ms']:8.3f} {r['fwd_timed_ms']:9.3f} | "
              f"{r['fwdbwd_gpu_ms']:8.3f} {r['fwdbwd_host_ms']:8.3f} {r['fwdbwd_timed_ms']:9.3f}", flush=True)
        del xs, do
        torch.cuda.empty_cache()
    top = rows[-1].get("cprofile_fwdbwd_top_own_ms_per_call", [])
    if top:
        print(f"cProfile, one f+b at B={shapes[-1][0]} N={shapes[-1][1]} d={shapes[-1][2]} (profiler-inflated): "
              "own ms / cumulative ms / calls per f+b")
        for e in top:
            print(f"  {e['own_ms']:7.3f} {e['cum_ms']:7.3f} {e['calls_per_call']:5.0f}  {e['function'][:90]}")
    return rows


def ptxas_usage(fn, constexprs, num_warps, arch=90):
    """Compile Triton kernel `fn` for sm_`arch` without a GPU; (registers, spilled bytes) per thread."""
    import re
    import subprocess
    import tempfile

    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    sig = {n: "constexpr" if n in constexprs else ("*i32" if n in ("work_ptr", "wf_ptr") else "*fp32")
           if n.endswith("_ptr") else "i32" for n in fn.arg_names}
    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(k.asm["cubin"])
        cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        dump = subprocess.run([cuobjdump, "--dump-resource-usage", path], capture_output=True, text=True,
                              check=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)", dump)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def ptxas_table(arch=90, K=8):
    """Registers / spilled bytes of the backward's main pass for the sweep's block shapes, and of the forward's
    output pass (entry by entry and factored W; static, no GPU)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("--ptxas compiles real kernels: unset TRITON_INTERPRET")
    BK = next_pow2(K)
    print(f"triton {triton.__version__}: compiled for sm_{arch}, K = {K}; registers / spilled bytes per thread "
          f"(255 registers is the cap; spilled bytes > 0 = local-memory traffic every step)")
    rows = []
    for L in (16, 64):
        for bp, nw, st in SWEEP_BWD:
            for split in (False, True) if (L, bp, nw, st) == (16, 32, 1, 1) else (False,):
                consts = {"L": L, "BK": BK, "BP": bp, "SPLIT_P": split, "STAGES": st}
                r, sp = ptxas_usage(KERNELS["bwd_main"], consts, nw, arch)
                rows.append({"kernel": "bwd_main", "block_t": L, "block_p": bp, "num_warps": nw, "stages": st,
                             "split_p": split, "regs": r, "spill_bytes": sp})
                print(f"  backward main pass L={L:>3} bp={bp:>3} nw={nw} stages={st}"
                      f"{' split' if split else '      '}: {r:>4} regs {sp:>5} B spilled", flush=True)
    # the forward's output pass (chunks of 64, a whole head of 64 channels per program)
    BK8 = max(8, BK)
    for name, extra in (("output pass, W entry by entry", dict(MODE=1)),
                        ("output pass, W factored", dict(MODE=1, WF=1, WF_RANGE=ScanConfig().w_factor_range))):
        for LS in (16, 32):
            for nw in (4, 8):
                consts = {"LS": LS, "NS": 64 // LS, "BK": BK8, "BP": 64, "PREC": "ieee", **extra}
                r, sp = ptxas_usage(KERNELS["y_chunk"], consts, nw, arch)
                rows.append({"kernel": name, "block_sub": LS, "num_warps": nw, "regs": r, "spill_bytes": sp})
                print(f"  {name:<30} sub={LS:>3} bp= 64 nw={nw}: {r:>4} regs {sp:>5} B spilled", flush=True)
    return rows


GRID = [(1, 2048, 1024, 8), (1, 16384, 1024, 8), (1, 65536, 1024, 8), (1, 262144, 1024, 8), (1, 1048576, 1024, 8),
        (8, 8192, 1024, 8), (1, 65536, 1024, 4), (1, 65536, 1024, 16), (4, 16384, 512, 8)]
GRID_BF16 = [(1, 65536, 1024, 8), (1, 1048576, 1024, 8)]      # the rows of GRID also timed with bf16 IO
QUICK_GRID = [(1, 16384, 1024, 8), (1, 262144, 1024, 8)]


def grid_rows(args):
    """[(dtype, (B, N, d_model, K))] that the grid section times."""
    if args.grid_n is not None:
        return [(io, (1, n, GRID_N_D_MODEL, 8)) for io in args.grid_io for n in args.grid_n]
    if args.no_grid:
        return []
    if args.quick:
        return [(torch.float32, shape) for shape in QUICK_GRID]
    return [(torch.float32, shape) for shape in GRID] + [(torch.bfloat16, shape) for shape in GRID_BF16]


GRID_HEADER = (f"{'B':>2} {'N':>8} {'d':>5} {'K':>3} {'io':>8} | {'fwd ms':>8} {'fwd %cp':>7} | {'f+b ms':>8} "
               f"{'f+b %cp':>7} | {'mem f MiB':>9} {'mem fb MiB':>10} ok")


def grid_line(r):
    return (f"{r['B']:>2} {r['N']:>8} {r['d_model']:>5} {r['K']:>3} {r['io']:>8} | {r['fwd_ms']:8.3f} "
            f"{100 * r['fwd_frac_copy']:6.1f}% | {r['fwdbwd_ms']:8.3f} {100 * r['fwdbwd_frac_copy']:6.1f}% | "
            f"{r['fwd_peak_mib']:9.0f} {r['fwdbwd_peak_mib']:10.0f} {r['grads_finite']}")


def run_grid(args, res, save, bw):
    """Forward and forward + backward of the default config over the grid; rows into res["grid"]."""
    rows = []
    res["grid"] = rows
    print(f"\ngrid, default config: ms (median); %cp = fewest bytes / time / copy bandwidth\n{GRID_HEADER}", flush=True)
    for dtype, (B, N, d, K) in grid_rows(args):
        try:
            t_f, t_fb, m_f, m_fb, ok = time_bk(B, N, d, K, dtype, default_config(P_HEAD, K))
        except torch.OutOfMemoryError as e:
            print(f"{B:>2} {N:>8} {d:>5} {K:>3} {str(dtype).split('.')[-1]:>8} OOM {e}", flush=True)
            torch.cuda.empty_cache()
            continue
        bf, bfb = bk_bytes(B, N, d, K, dtype)
        r = dict(B=B, N=N, d_model=d, K=K, io=str(dtype).split(".")[-1], fwd_ms=t_f, fwdbwd_ms=t_fb,
                 fwd_bytes=bf, fwdbwd_bytes=bfb, fwd_frac_copy=bf / (t_f * 1e-3) / bw,
                 fwdbwd_frac_copy=bfb / (t_fb * 1e-3) / bw, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb, grads_finite=ok)
        rows.append(r)
        save()
        print(grid_line(r), flush=True)
    return rows


def compare_row(N, d, K, step, reference):
    """One N of the compare section: BK (float32, bf16), references, mambapy, flash; returns (row, compiled step)."""
    r = {"N": N}
    for io in (torch.float32, torch.bfloat16):
        t_f, t_fb, m_f, m_fb, ok = time_bk(1, N, d, K, io, default_config(P_HEAD, K))
        r["bk_triton_" + str(io).split(".")[-1]] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_peak_mib=m_f,
                                                        fwdbwd_peak_mib=m_fb, grads_finite=ok)
    if N <= 4096 and reference:
        try:
            t_f, t_fb = time_recurrent(N, d, K)
            r["torch_recurrent_f32"] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, note="one timed call")
        except Exception as e:  # noqa: BLE001
            r["torch_recurrent_f32"] = {"error": repr(e)[:200]}
        try:
            if N > 2048:
                raise RuntimeError("capped: compiled step loop only timed at N=2048")
            step = step or make_compiled_step()
            t_f, t_fb = time_compiled(N, d, K, step)
            r["torch_compiled_step_f32"] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, note="compiled step, one timed call")
        except Exception as e:  # noqa: BLE001
            r["torch_compiled_step_f32"] = {"error": repr(e)[:200]}
    try:
        t_f, t_fb, m_f, m_fb = time_mamba(N, d)
        r["mambapy_pscan_f32"] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb)
    except Exception as e:  # noqa: BLE001
        r["mambapy_pscan_f32"] = {"error": repr(e)[:200]}
    torch.cuda.empty_cache()
    try:
        t_f, t_fb, m_f, m_fb = time_sdpa(N, d)
        r["sdpa_flash_bf16"] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb)
    except Exception as e:  # noqa: BLE001
        r["sdpa_flash_bf16"] = {"error": repr(e)[:200]}
    if N <= 16384:   # below 16k the eager BK figure is the host's: also the GPU's, from CUDA graphs
        try:
            r["fwdbwd_graph_ms"] = {"bk_float32": bench_graphed(bk_fwdbwd(1, N, d, K, torch.float32)),
                                    "bk_bfloat16": bench_graphed(bk_fwdbwd(1, N, d, K, torch.bfloat16)),
                                    "sdpa_flash_bf16": bench_graphed(flash_fwdbwd(N, d))}
        except Exception as e:  # noqa: BLE001
            r["fwdbwd_graph_ms"] = {"error": repr(e)[:200]}
        torch.cuda.empty_cache()
    return r, step


def print_compare_row(r):
    fmt = lambda k: (f"{r[k]['fwd_ms']:.3f}/{r[k]['fwdbwd_ms']:.3f}" if k in r and "fwd_ms" in r[k]
                     else ("err" if k in r else "-"))
    print(f"N={r['N']:>7}  bk f32 {fmt('bk_triton_float32')}  bk bf16 {fmt('bk_triton_bfloat16')}  "
          f"recurrent {fmt('torch_recurrent_f32')}  compiled {fmt('torch_compiled_step_f32')}  "
          f"mambapy {fmt('mambapy_pscan_f32')}  sdpa {fmt('sdpa_flash_bf16')}", flush=True)
    g = r.get("fwdbwd_graph_ms", {})
    if "bk_float32" in g:
        print(f"   fwd+bwd from CUDA graphs: bk f32 {g['bk_float32']:.3f}  bk bf16 {g['bk_bfloat16']:.3f}  "
              f"sdpa {g['sdpa_flash_bf16']:.3f}  flash/bk f32 {g['sdpa_flash_bf16'] / g['bk_float32']:.2f}  "
              f"bf16 {g['sdpa_flash_bf16'] / g['bk_bfloat16']:.2f}", flush=True)
    for k, v in r.items():
        if isinstance(v, dict) and "error" in v:
            print(f"   {k}: {v['error']}")


def run_compare(args, res, save, d=1024, K=8):
    rows = []
    res["compare"] = rows
    print(f"\ncompare (batch 1, d_model {d}; BK K={K} shifts = 16 real state numbers per channel; Mamba state 16; "
          f"SDPA flash bf16 head 64). ms fwd / fwd+bwd", flush=True)
    step = None
    for N in [2048, 8192] if args.quick else [2048, 4096, 8192, 16384, 32768, 65536]:
        r, step = compare_row(N, d, K, step, reference=not args.no_reference)
        rows.append(r)
        save()
        print_compare_row(r)
    return rows


def print_summary(res, path):
    """The grid (and the compare section's BK and flash times) again, one table at the end of the run."""
    print(f"\nsummary ({res.get('device', '?')}; default config; written to {path})")
    for key, c in res.get("check", {}).items():
        print(f"check {key:49s} max rel err {c['max_rel_err']:.2e} (tol {c['tol']:g}) {'PASS' if c['pass'] else 'FAIL'}")
    if res.get("grid"):
        print(GRID_HEADER)
        for r in res["grid"]:
            print(grid_line(r))
    if res.get("compare"):
        print(f"{'N':>8} | {'bk f32 fwd':>11} {'f+b':>8} | {'bk bf16 fwd':>11} {'f+b':>8} | {'flash fwd':>11} {'f+b':>8}")
        for r in res["compare"]:
            cols = []
            for k in ("bk_triton_float32", "bk_triton_bfloat16", "sdpa_flash_bf16"):
                v = r.get(k, {})
                cols.append(f"{v['fwd_ms']:>11.3f} {v['fwdbwd_ms']:8.3f}" if "fwd_ms" in v else f"{'-':>11} {'-':>8}")
            print(f"{r['N']:>8} | " + " | ".join(cols))


def comma_list(kind):
    def parse(text):
        try:
            return [kind(x) for x in text.split(",") if x]
        except (ValueError, AttributeError) as e:
            raise argparse.ArgumentTypeError(f"expected a comma list, got {text!r} ({e})")
    return parse


def io_dtype(name):
    if name not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{name!r} is not one of float32, bfloat16, float16")
    return getattr(torch, name)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("out", nargs="?", default="results/kernel_bench.json", help="JSON output path")
    p.add_argument("--quick", action="store_true", help="a short grid and compare section")
    p.add_argument("--no-check", action="store_true", help="skip the correctness check")
    p.add_argument("--no-grid", action="store_true", help="skip the grid")
    p.add_argument("--grid-n", type=comma_list(int), default=None, help="grid rows (1, N, 1024, 8) for these N")
    p.add_argument("--grid-io", type=comma_list(io_dtype), default=[torch.float32],
                   help="IO dtypes of the --grid-n rows (default float32)")
    p.add_argument("--no-compare", action="store_true", help="skip the compare section")
    p.add_argument("--no-reference", action="store_true", help="leave the PyTorch references out of compare")
    p.add_argument("--small-n", action="store_true")
    p.add_argument("--compile-check", action="store_true")
    p.add_argument("--host", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sweep", action="store_true", help="forward and backward blocks per chunk length")
    p.add_argument("--sweep-no-fwd", action="store_true", help="the sweep without its forward rows")
    p.add_argument("--sweep-l", type=comma_list(int), default=[16, 32, 64], help="the sweep's chunk lengths (>= 16)")
    p.add_argument("--sweep-n", type=int, default=None, help="N of the sweeps and the profile (default 262144)")
    p.add_argument("--sweep-chunked", nargs="?", const="all", choices=("all", "fb"), default=None,
                   help="sweep the forward's blocks (=fb: forward + backward of the default with other chunk scans)")
    p.add_argument("--sweep-wf", action="store_true", help="factored W vs entry by entry")
    p.add_argument("--deadline-s", type=float, default=None, help="sweeps skip what they reach after S seconds")
    p.add_argument("--ptxas", nargs="?", const=90, type=int, default=None, metavar="ARCH",
                   help="only compile the main passes for sm_ARCH and print registers / spills (no GPU needed)")
    args = p.parse_args(argv)
    if any(L < 16 for L in args.sweep_l):
        p.error(f"--sweep-l: chunk lengths must be >= 16 (sub-chunks of 16), got {args.sweep_l}")
    return args


def main(argv=None):
    global SWEEP_SHAPE
    args = parse_args(argv)
    if args.ptxas is not None:
        ptxas_table(args.ptxas)
        return
    path = args.out
    t_start = time.time()
    deadline = t_start + args.deadline_s if args.deadline_s is not None else float("inf")
    if args.sweep_n is not None:
        SWEEP_SHAPE = (1, args.sweep_n, 1024, 8)   # read by the sweeps and profile_kernels
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "head_size": P_HEAD, "cmd": " ".join(sys.argv), "sweep_and_profile_shape": SWEEP_SHAPE,
           "default_config": vars(default_config(P_HEAD, 8))}

    def save():   # after every section and row: a run stopped at its time limit keeps what it measured
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    bw = copy_bandwidth()
    res["copy_bytes_per_s"] = bw
    print(f"device {res['device']}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"device-to-device copy: {bw / 1e12:.2f} TB/s (read + write)", flush=True)
    if not args.no_check:
        res["check"] = correctness()
        save()
    run_grid(args, res, save, bw)
    if not args.no_compare:
        run_compare(args, res, save)
    if args.small_n:
        small_n(save, res, deadline)
        save()
    if args.compile_check:
        res["compile_check"] = compile_check()
        save()
    if args.host:
        res["host_overhead"] = host_overhead()
        save()
    if args.profile:      # default blocks first: a run stopped during the sweep keeps them
        res["profile"] = profile_kernels({"default": default_config(P_HEAD, 8)})
        save()
    if args.sweep_chunked is not None:
        best = sweep_chunked(save, res, deadline, fb_only=args.sweep_chunked == "fb")
        if args.profile and best is not None:
            res["profile"].update(profile_kernels({"fastest forward of the sweep": best}))
        save()
    if args.sweep_wf:
        sweep_wf(save, res, deadline)
        save()
    if args.sweep:
        res["sweep"] = sweep_configs(save, res, tuple(args.sweep_l), fwd=not args.sweep_no_fwd, deadline=deadline)
        best = best_sweep_config(res)
        if args.profile and best is not None:
            res["profile"].update(profile_kernels({"fastest backward of the sweep": best}))
    save()
    print_summary(res, path)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
