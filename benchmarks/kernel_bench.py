"""Benchmark of the fused Triton BK scan on one GPU (issue 3; DESIGN.md 2.6).

    PYTHONPATH=. python benchmarks/kernel_bench.py [results/kernel_bench.json] [--quick] [--no-compare]
        [--no-check] [--no-grid] [--grid-n=N1,N2,..] [--grid-io=float32,bfloat16] [--sweep] [--sweep-no-fwd] [--sweep-l=16,32,64] [--sweep-n=N]
        [--profile] [--host] [--time-loop=scan|sequential|chunked] [--bwd-loop=scan|sequential|chunked|all]
        [--sweep-chunked[=fb]] [--sweep-v5] [--sweep-wf] [--small-n] [--compile-check] [--no-reference] [--deadline-s=S]
    PYTHONPATH=. python benchmarks/kernel_bench.py --ptxas[=90]     (no GPU needed)

Prints tables and writes JSON:
  * copy: device-to-device copy bandwidth (bytes read + written) measured in this run = the floor;
  * check: GPU correctness of the kernel vs the float64 recurrent reference (forward + all grads),
    for each forward time loop;
  * grid: forward and forward+backward time (triton.testing.do_bench, median) over (batch, N, d_model, K),
    the minimal bytes each must move, achieved bytes/s as a fraction of the copy bandwidth, peak memory;
    every row once per selected forward time loop (`ScanConfig.time_loop`: "scan" = kernel version 1,
    tl.associative_scan inside a chunk; "seq" = version 2, sequential loop over t inside a chunk, state
    in registers) and backward loop (`ScanConfig.bwd_loop`: "scan" = version 1, "sequential" = version 3);
  * compare (N = 2k..64k, batch 1, d_model 1024): BK Triton (the selected loops), the PyTorch recurrent
    reference (and a torch.compile'd step loop), mambapy's parallel-scan selective scan (state 16),
    causal SDPA (flash); up to 16k also BK (default blocks) and flash forward + backward replayed from CUDA
    graphs (the GPU's time; eagerly, BK is host-bound there);
  * sweep (--sweep; B = 1, N = 262144, d_model 1024, K = 8, f32): forward blocks per chunk length L, and the
    backward alone per L for each backward loop: version 1 blocks (bwd_block_p, bwd_num_warps) and version 3
    blocks (+ bwd_stages), then the fastest version-3 blocks with several bwd_programs_per_sm; every backward
    row records the registers and spilled bytes of its main-pass kernel as compiled;
  * profile (--profile): CUDA time per kernel of one forward + backward, default blocks per backward loop
    and, after a sweep, the fastest version-3 blocks;
  * sweep-chunked (--sweep-chunked; same shape as --sweep): the version-4 forward (time_loop="chunked",
    sub-chunks as matrices) over chunk length, sub-chunk length and warps, then dot precisions and
    chunk-scan tiles on the fastest, then forward + backward of the fastest; =fb: only forward + backward
    of the default version-4 config with other chunk-level scans and version-3 stages;
  * sweep-v5 (--sweep-v5; same shape): forward + backward with the version-5 backward over chunk length,
    sub-chunk length, backward warps and channels per program, the version-3 default alongside;
  * sweep-wf (--sweep-wf; same shape): the version-4 forward and forward + backward with W formed by one dot of
    factors (`ScanConfig.w_factor_range`, the default) or entry by entry (w_factor_range=0), over sub-chunk
    length and dot precision, and the same on inputs whose decays are too steep for the factored form
    (|a| ~ 1e3: every sub-chunk falls back), so the cost of the range check shows;
  * small-n (--small-n): BK forward + backward against causal flash at N = 2k..16k, eager and replayed from a
    CUDA graph (the GPU's time without the launch cost), over a few chunk lengths;
  * compile-check (--compile-check): whether torch.compile(fullgraph=True) traces the scan forward + backward,
    its difference from eager and its time (default and reduce-overhead modes), N = 4096;
  * host (--host): GPU kernel time vs the host's time to issue one call (Python + launches) at small N and
    at one layer of the 10M comparison model, and cProfile's costliest host functions.
--no-reference leaves the PyTorch references (recurrent, compiled step) out of the compare section.
Head size P = 64 channels (H = d_model / 64 heads). Times in ms. --time-loop=X times only that forward loop;
--bwd-loop=X that backward loop (`ScanConfig.bwd_loop`: scan = version 1, sequential = version 3, chunked =
version 5; a comma list, or all (alias both) = each; default: the library's default loop), in the check, grid,
compare, sweep and profile alike. --time-loop takes a comma list too.
--grid-n replaces the grid by (1, N, 1024, 8) rows, float32 or those of --grid-io=float32,bfloat16. --sweep-no-fwd skips the forward blocks in
the sweep, --sweep-l picks its L, --sweep-n its N (and the profile's; default 262144: at N <= 16k the
backward has a ~1.5 ms floor to explain, docs/benchmarks.md). --deadline-s=S: the sweep skips (and lists) the configs it has not
reached S seconds after the start, so a run under a time limit still ends with its profile and JSON.
--ptxas[=ARCH] only compiles the backward's main passes (v1 and v3, the sweep's block shapes at K = 8) for
sm_ARCH (default 90 = Hopper) with Triton's bundled ptxas and prints registers and spilled bytes per thread:
a static check that runs on a machine without a GPU (TRITON_INTERPRET must be off).
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch
import triton
import triton.testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from resnet_bk_hf.ops.bk import recurrent  # noqa: E402
from resnet_bk_hf.ops.bk.triton import scan as ts  # noqa: E402

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


def loop_cfg(time_loop, K=8, bwd_loop="scan"):
    """The default config with the given forward time loop ("scan" = v1, "sequential" = v2) and backward
    loop ("scan" = v1, "sequential" = v3)."""
    return ts.default_config(P_HEAD, K, time_loop, bwd_loop)


BWD_SHORT = {"scan": "v1", "sequential": "v3", "chunked": "v5"}


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
    """kernel_usage of the backward's main pass (v1 `_bwd_main_kernel` or v3 `_bwd_main_seq_kernel`) for cfg."""
    BK = ts._next_pow2(K)
    BP = min(cfg.bwd_block_p or cfg.block_p, ts._next_pow2(P_HEAD))
    warps = cfg.bwd_num_warps or cfg.num_warps
    if cfg.bwd_loop == "sequential":
        return kernel_usage(ts._bwd_main_seq_kernel, L=cfg.block_t, BK=BK, BP=BP, STAGES=cfg.bwd_stages,
                            num_warps=warps)
    if cfg.bwd_loop == "chunked":
        return kernel_usage(ts._bwd_chunk_mm_kernel, LS=cfg.block_sub, BK=max(8, BK), BP=max(16, BP),
                            num_warps=warps)
    return kernel_usage(ts._bwd_main_kernel, L=cfg.block_t, BK=BK, BP=BP, num_warps=warps)


def time_bk(B, N, d, K, dtype, cfg=None):
    xs = bk_inputs(B, N, d, K, dtype, grad=True)
    f = lambda: ts.causal_resolvent_scan_triton(*xs, config=cfg)[0]
    with torch.no_grad():
        t_f = bench(lambda: ts.causal_resolvent_scan_triton(*[x.detach() for x in xs], config=cfg))
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV, dtype=dtype)

    def fb():   # autograd.grad: no accumulation into .grad inside the timed region
        return torch.autograd.grad(f(), xs, do)
    t_fb = bench(fb, rep=300)
    m_f = peak_mem(lambda: ts.causal_resolvent_scan_triton(*[x.detach() for x in xs], config=cfg))
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


def correctness(checks=CHECKS, time_loops=ts.TIME_LOOPS, bwd_loops=("scan",), configs=None):
    """Forward + every gradient vs the float64 recurrent reference, poisoned outputs, ragged N.

    The reference is computed once per case; the kernel runs once per (forward time loop, backward loop), or,
    with configs ({label: changes to the default config}), once per entry of configs instead."""
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
        o_r, (g_r, y_r) = recurrent.causal_resolvent_scan_recurrent(*ref_in[:7], (ref_in[7], ref_in[8]))
        w = [torch.randn_like(o_r), torch.randn_like(g_r), torch.randn_like(y_r)]
        w[0] = w[0].to(dtype).double()   # dL/do reaches the kernel in o's dtype
        gr = torch.autograd.grad((o_r * w[0]).sum() + (g_r * w[1]).sum() + (y_r * w[2]).sum(), ref_in)
        rel = lambda x, r: ((x.detach().double().cpu() - r.detach()).norm() / r.detach().norm()).item()
        if configs is None:
            runs = [(f"{t}, bwd {BWD_SHORT[b]}", loop_cfg(t, K, b)) for t in time_loops for b in bwd_loops]
        else:
            runs = [(label, ts.ScanConfig(**{**vars(ts.default_config(P_HEAD, K)), **kw}))
                    for label, kw in configs.items()]
        for label, cfg in runs:
            time_loop, bwd_loop = cfg.time_loop, cfg.bwd_loop
            key = f"{name} [{label}]"
            ts.POISON = True
            try:
                o_k, (g_k, y_k) = ts.causal_resolvent_scan_triton(*k_in[:7], (k_in[7], k_in[8]), config=cfg)
                gk = torch.autograd.grad((o_k.float() * w[0].float().to(DEV)).sum()
                                         + (g_k * w[1].float().to(DEV)).sum()
                                         + (y_k * w[2].float().to(DEV)).sum(), k_in)
            finally:
                ts.POISON = False
            errs = {"o": rel(o_k, o_r), "gN": rel(g_k, g_r), "yN": rel(y_k, y_r)}
            for n, x, r in zip(["a", "hop", "u", "c_re", "c_im", "z_re", "z_im", "g0", "y0"], gk, gr):
                errs["d_" + n] = rel(x, r)
            finite = all(torch.isfinite(t).all().item() for t in [o_k, g_k, y_k, *gk])
            worst = max(errs.values())
            out[key] = {"time_loop": time_loop, "bwd_loop": bwd_loop, "max_rel_err": worst, "tol": tol,
                        "finite": finite, "pass": finite and worst <= tol, "errs": errs}
            print(f"check {key:49s} max rel err {worst:.2e} (tol {tol:g}) finite={finite} "
                  f"{'PASS' if out[key]['pass'] else 'FAIL'}", flush=True)
    return out


# ----------------------------------------------------------------------------- comparisons


def time_recurrent(N, d, K, cap_s=20.0):
    B = 1
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    t0 = time.time()
    o, _ = recurrent.causal_resolvent_scan_recurrent(*xs)
    torch.cuda.synchronize()
    t_f = (time.time() - t0) * 1e3
    t0 = time.time()
    o, _ = recurrent.causal_resolvent_scan_recurrent(*xs)
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
    return lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do)


# Small N (--small-n): blocks tried for BK against flash, forward + backward replayed from CUDA graphs. Shorter
# chunks give more programs and shorter sequential walks inside a chunk, longer chunk-level scans.
SMALL_N = [2048, 4096, 8192, 16384]
SMALL_N_CFGS = [{}, dict(block_t=32, block_sub=16), dict(block_t=32, block_sub=32), dict(block_t=16, block_sub=16),
                dict(block_t=32, block_sub=16, bwd_programs_per_sm=32),
                dict(block_t=16, block_sub=16, bwd_programs_per_sm=32),
                dict(block_t=16, block_sub=16, chunk_block=64, scan_tile=4096),
                dict(block_t=32, block_sub=16, time_loop="sequential", block_p=32)]


def small_n(save, res, deadline=float("inf"), d=1024, K=8):
    """BK forward + backward against causal flash at N = 2k..16k, eager (host-bound there) and replayed from
    CUDA graphs (GPU time), over SMALL_N_CFGS; float32 and bf16 BK IO. Returns the rows."""
    rows = []
    res["small_n"] = rows
    print(f"\nsmall N, batch 1, d_model {d}, K {K}: forward + backward ms (median); graph = replayed from a CUDA "
          f"graph; flash bf16 head 64", flush=True)
    base = vars(ts.default_config(P_HEAD, K))
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
                cfg = ts.ScanConfig(**{**base, **kw})
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
    ref = torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs)[0], xs, do)   # eager
    for mode in ("default", "reduce-overhead"):
        try:
            torch._dynamo.reset()
            f = torch.compile(lambda *x: ts.causal_resolvent_scan_triton(*x)[0], fullgraph=True, mode=mode)
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
# Version 1 backward: (bwd_block_p, bwd_num_warps) per L. At L = 32 and 64 only the fastest two / one of the
# H100 sweep of 2026-11-23 (benchmarks/results/h100_sweep.log: the others were 1.8-6.6x slower there).
SWEEP_BWD = {16: [(8, 4), (16, 4), (16, 8), (32, 8), (64, 8)], 32: [(8, 4), (16, 8)], 64: [(8, 4)]}
# Version 3 backward: (bwd_block_p, bwd_num_warps, bwd_stages), the same at every L (its registers do not
# grow with L). 1-warp programs keep every channel and shift reduction inside a warp (no barrier per step).
SWEEP_BWD_V3 = [(64, 8, 1), (64, 4, 1), (64, 4, 3), (64, 2, 1), (64, 1, 1), (32, 1, 1), (32, 1, 3), (32, 2, 1),
                (16, 1, 1)]
# bwd_programs_per_sm tried on the fastest version-3 blocks (None = the default, min(32, 64 // warps)): fewer
# programs keep the scratch slots (L x K x channel-block complex each) in L2 but hide less latency.
SWEEP_V3_PROGRAMS = [2, 4, 8, 16, 32]   # 32: the most one-warp programs an SM holds (for short N)


def sweep_configs(save, res, block_ts=(16, 32, 64), time_loops=ts.TIME_LOOPS, bwd_loops=ts.BWD_LOOPS, fwd=True,
                  deadline=float("inf")):
    """Forward (per time loop) and backward (per backward loop) timed separately per chunk length L = block_t.

    The forward and the backward share L (the backward restarts from the forward's chunk-boundary
    states) but may use different channel blocks and warps (ScanConfig.bwd_block_p / bwd_num_warps).
    Returns the rows; res["sweep_best"] gets the fastest backward per backward loop."""
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
            o = ts.causal_resolvent_scan_triton(*xs, config=cfg)[0]
            t = bench(lambda: torch.autograd.grad(o, xs, do, retain_graph=True), rep=100)
            del o
        except Exception as e:  # noqa: BLE001
            print(f"  {label}: {repr(e)[:200]}", flush=True)
            return None
        use = main_pass_usage(cfg, K) or {}
        row = {"pass": "bwd", "bwd_loop": cfg.bwd_loop, "block_t": cfg.block_t, "block_p": cfg.bwd_block_p,
               "num_warps": cfg.bwd_num_warps, "ms": t, "main_regs": use.get("regs"),
               "main_spill_bytes": use.get("spill_bytes")}
        if cfg.bwd_loop == "sequential":
            row.update(bwd_stages=cfg.bwd_stages, bwd_programs_per_sm=cfg.bwd_programs_per_sm)
        out.append(row)
        print(f"  {label}: {t:8.3f}   regs {use.get('regs', '?')} spill {use.get('spill_bytes', '?')}", flush=True)
        return t

    def bwd_cfg(L, bp, nw, bwd_loop, stages=1, programs=None):
        return ts.ScanConfig(block_t=L, block_p=32, chunk_block=16, num_warps=4, time_loop="sequential",
                             bwd_block_p=bp, bwd_num_warps=nw, bwd_loop=bwd_loop, bwd_stages=stages,
                             bwd_programs_per_sm=programs)

    best = {}
    for L in block_ts:
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        det = [x.detach() for x in xs]
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for tl_ in (time_loops if fwd else ()):
            for bp, nw in SWEEP_FWD:
                cfg = ts.ScanConfig(block_t=L, block_p=bp, chunk_block=16, num_warps=nw, time_loop=tl_)
                if time.time() > deadline:
                    skipped.append(f"fwd L={L} {tl_} bp={bp} nw={nw}")
                    continue
                try:
                    with torch.no_grad():
                        t = bench(lambda: ts.causal_resolvent_scan_triton(*det, config=cfg), rep=100)
                except Exception as e:  # noqa: BLE001
                    print(f"  fwd L={L} {tl_} bp={bp} nw={nw}: {repr(e)[:200]}", flush=True)
                    continue
                out.append({"pass": "fwd", "block_t": L, "time_loop": tl_, "block_p": bp, "num_warps": nw, "ms": t})
                print(f"  fwd L={L:>3} {tl_:>10} bp={bp:>3} nw={nw}: {t:8.3f}", flush=True)
        if "scan" in bwd_loops:
            for bp, nw in SWEEP_BWD.get(L, SWEEP_BWD[16]):
                t = time_bwd(bwd_cfg(L, bp, nw, "scan"), xs, do, f"bwd v1 L={L:>3} bp={bp:>3} nw={nw}        ")
                if t is not None and t < best.get("scan", (float("inf"),))[0]:
                    best["scan"] = (t, {"block_t": L, "bwd_block_p": bp, "bwd_num_warps": nw})
        if "sequential" in bwd_loops:
            for bp, nw, st in SWEEP_BWD_V3:
                t = time_bwd(bwd_cfg(L, bp, nw, "sequential", st), xs, do,
                             f"bwd v3 L={L:>3} bp={bp:>3} nw={nw} stages={st}")
                if t is not None and t < best.get("sequential", (float("inf"),))[0]:
                    best["sequential"] = (t, {"block_t": L, "bwd_block_p": bp, "bwd_num_warps": nw,
                                              "bwd_stages": st})
        save()
        del xs, det, do
        torch.cuda.empty_cache()
    if "sequential" in best:
        c = best["sequential"][1]
        L = c["block_t"]
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for programs in SWEEP_V3_PROGRAMS:
            cfg = bwd_cfg(L, c["bwd_block_p"], c["bwd_num_warps"], "sequential", c["bwd_stages"], programs)
            t = time_bwd(cfg, xs, do, f"bwd v3 L={L:>3} bp={c['bwd_block_p']:>3} nw={c['bwd_num_warps']} "
                                      f"stages={c['bwd_stages']} programs/SM={programs}")
            if t is not None and t < best["sequential"][0]:
                best["sequential"] = (t, {**c, "bwd_programs_per_sm": programs})
        del xs, do
        torch.cuda.empty_cache()
    res["sweep_best"] = {loop: {"ms": t, **c} for loop, (t, c) in best.items()}
    for loop, (t, c) in best.items():
        print(f"  fastest backward {BWD_SHORT[loop]}: {t:.3f} ms with {c}", flush=True)
    if skipped:
        print(f"  deadline: skipped {len(skipped)} configs (listed in sweep_skipped_at_deadline)", flush=True)
    save()
    return out


# Version 4 forward ("chunked"): block_t, block_sub, num_warps, g_stored, w3d swept with float32 FMA dots; the
# fastest then with the other dot precisions and chunk-scan tiles (chunk_block, scan_tile, scan_num_warps).
# (A first sweep on the H200, 2026-12-01, over L 64/128/256 x sub 16/32/64 x 4/8 warps without g_stored/w3d:
# 8 warps always slower, sub 32 fastest at every L; benchmarks/results/h200_v4_sweep1.log.)
SWEEP_V4 = [dict(block_t=L, block_sub=LS, num_warps=4, g_stored=gs, w3d=w3)
            for L in (64, 256) for LS in (16, 32) for gs in (False, True) for w3 in (False, True)]
SWEEP_V4_SCAN = [(16, 2048, 4), (64, 4096, 8)]


# forward + backward of the default v4 config at SWEEP_SHAPE with these changes (chunk-level scans, v3 stages)
SWEEP_V4_FWDBWD = [{}, dict(chunk_block=64, scan_tile=4096, scan_num_warps=8),
                   dict(chunk_block=32, scan_tile=2048, scan_num_warps=4),
                   dict(chunk_block=128, scan_tile=8192, scan_num_warps=8), dict(bwd_stages=2), dict(bwd_stages=3)]


def sweep_chunked_fwdbwd(save, res, base, deadline=float("inf"), K=8):
    B, N, d, _ = SWEEP_SHAPE
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
    rows = []
    res["sweep_chunked_fwdbwd_default"] = rows
    print(f"\nforward + backward, default v4 config with changes, B={B} N={N} d={d} K={K} f32: ms (median)",
          flush=True)
    for kw in SWEEP_V4_FWDBWD:
        if time.time() > deadline:
            print(f"  {kw}: skipped (deadline)", flush=True)
            continue
        cfg = ts.ScanConfig(**{**vars(base), **kw})
        t = bench(lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do), rep=100)
        rows.append({"changes": kw, "fwdbwd_ms": t})
        print(f"  f+b default {kw or '(as is)'}: {t:8.3f}", flush=True)
        save()
    del xs, do
    torch.cuda.empty_cache()
    return None


def sweep_chunked(save, res, deadline=float("inf"), K=8, fb_only=False):
    """Forward alone with time_loop="chunked" at SWEEP_SHAPE, then forward + backward (version-3 backward at
    the same chunk length) of the fastest forward and of the fastest at block_t = 64 (the v3 default)."""
    B, N, d, _ = SWEEP_SHAPE
    base = ts.default_config(P_HEAD, K, "chunked", "sequential")
    if fb_only:       # forward + backward of the default with other chunk scans and v3 stages only
        return sweep_chunked_fwdbwd(save, res, base, deadline)
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    det = [x.detach() for x in xs]
    rows = []
    res["sweep_chunked"] = rows
    print(f"\nsweep chunked forward (v4) B={B} N={N} d={d} K={K} f32: ms (median)", flush=True)

    def time_fwd(cfg, label):
        if time.time() > deadline:
            print(f"  {label}: skipped (deadline)", flush=True)
            return None
        try:
            with torch.no_grad():
                t = bench(lambda: ts.causal_resolvent_scan_triton(*det, config=cfg), rep=100)
        except Exception as e:  # noqa: BLE001
            print(f"  {label}: {repr(e)[:300]}", flush=True)
            return None
        bf, _ = bk_bytes(B, N, d, K, torch.float32)
        rows.append({"pass": "fwd", **{k: getattr(cfg, k) for k in ("block_t", "block_sub", "num_warps",
                     "dot_precision", "chunk_block", "scan_tile", "scan_num_warps", "g_stored", "w3d")}, "ms": t,
                     "frac_copy": bf / (t * 1e-3) / res["copy_bytes_per_s"]})
        print(f"  {label}: {t:8.3f}  ({100 * rows[-1]['frac_copy']:.1f}% copy)", flush=True)
        save()
        return t

    def cfg_of(**kw):
        return ts.ScanConfig(**{**vars(base), **kw})

    best, best64 = None, None
    for kw in SWEEP_V4:
        cfg = cfg_of(**kw)
        t = time_fwd(cfg, "fwd v4 " + " ".join(f"{k}={v}" for k, v in kw.items()) + " ieee")
        if t is not None and (best is None or t < best[0]):
            best = (t, cfg)
        if t is not None and cfg.block_t == 64 and (best64 is None or t < best64[0]):
            best64 = (t, cfg)
    if best is not None:
        for prec in ("tf32x3", "tf32"):
            cfg = cfg_of(**{**vars(best[1]), "dot_precision": prec})
            time_fwd(cfg, f"fwd v4 best blocks, dot {prec}")
        for cb, tile, snw in SWEEP_V4_SCAN:
            cfg = cfg_of(**{**vars(best[1]), "chunk_block": cb, "scan_tile": tile, "scan_num_warps": snw})
            t = time_fwd(cfg, f"fwd v4 best blocks, chunk scan cb={cb} tile={tile} warps={snw}")
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
            t = bench(lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do),
                      rep=100)
            fb_rows.append({"name": name, "config": vars(cfg), "fwdbwd_ms": t})
            print(f"  f+b {name}: {t:8.3f} ms  {vars(cfg)}", flush=True)
            save()
    res["sweep_chunked_best"] = vars(best[1]) if best else None
    del xs, do
    torch.cuda.empty_cache()
    return best[1] if best else None


# Version 5 backward ("chunked"): forward + backward (version-4 forward) over chunk length, sub-chunk length (shared
# by both), the backward's warps and channels per program. Its L x L x K tiles spill at every shape when compiled
# for sm_90 (--ptxas), so which one is fastest has to be measured.
SWEEP_V5 = [dict(block_t=L, block_sub=LS, bwd_num_warps=nw, bwd_block_p=bp)
            for L in (64, 128) for LS in (16, 32) for nw in (4, 8) for bp in (32, 64)]


def sweep_v5(save, res, deadline=float("inf"), K=8):
    """Forward + backward with bwd_loop="chunked" at SWEEP_SHAPE over SWEEP_V5; the version-3 default alongside.
    Returns the fastest config (or None)."""
    B, N, d, _ = SWEEP_SHAPE
    xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
    do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
    rows = []
    res["sweep_v5"] = rows
    print(f"\nsweep chunked backward (v5) B={B} N={N} d={d} K={K} f32: forward + backward ms (median); "
          f"main-pass registers / spilled bytes", flush=True)
    base = ts.default_config(P_HEAD, K, "chunked", "chunked")
    best = None
    for kw in [None] + SWEEP_V5:
        cfg = ts.default_config(P_HEAD, K, "chunked", "sequential") if kw is None else ts.ScanConfig(
            **{**vars(base), **kw})
        label = "v3 default" if kw is None else "v5 " + " ".join(f"{k}={v}" for k, v in kw.items())
        if time.time() > deadline:
            print(f"  {label}: skipped (deadline)", flush=True)
            continue
        try:
            t = bench(lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do),
                      rep=50)
        except Exception as e:  # noqa: BLE001
            print(f"  {label}: {repr(e)[:300]}", flush=True)
            continue
        use = main_pass_usage(cfg, K) or {}
        rows.append({"config": vars(cfg), "fwdbwd_ms": t, "main_regs": use.get("regs"),
                     "main_spill_bytes": use.get("spill_bytes")})
        print(f"  {label}: {t:8.3f}   regs {use.get('regs', '?')} spill {use.get('spill_bytes', '?')}", flush=True)
        save()
        if kw is not None and (best is None or t < best[0]):
            best = (t, cfg)
    del xs, do
    torch.cuda.empty_cache()
    res["sweep_v5_best"] = vars(best[1]) if best else None
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
    base = ts.default_config(P_HEAD, K, "chunked", "sequential")
    print(f"\nsweep factored W (v4 output pass) B={B} N={N} d={d} K={K} f32: ms (median) forward, forward + backward",
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
                cfg = ts.ScanConfig(**{**vars(base), **kw, "w_factor_range": wf})
                name = f"{inputs:>8} {label:<14} w_factor_range={wf:5.1f}"
                if time.time() > deadline:
                    print(f"  {name}: skipped (deadline)", flush=True)
                    continue
                try:
                    with torch.no_grad():
                        t_f = bench(lambda: ts.causal_resolvent_scan_triton(*det, config=cfg), rep=100)
                    t_fb = bench(lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0],
                                                             xs, do), rep=50)
                except Exception as e:  # noqa: BLE001
                    print(f"  {name}: {repr(e)[:300]}", flush=True)
                    continue
                use = kernel_usage(ts._y_chunk_mm_kernel, LS=cfg.block_sub, MODE=1, WF=1 if wf else 0,
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


def best_v3_config(res, K=8):
    """The fastest version-3 backward of the sweep as a ScanConfig (forward: default blocks at that L)."""
    c = res.get("sweep_best", {}).get("sequential")
    if not c:
        return None
    c = {k: v for k, v in c.items() if k != "ms"}
    return ts.ScanConfig(**{**vars(ts.default_config(P_HEAD, K, "sequential", "sequential")), **c})


def profile_kernels(cfgs):
    """CUDA time per kernel of one forward + backward (torch.profiler), to see where the time goes."""
    from torch.profiler import ProfilerActivity, profile
    B, N, d, K = SWEEP_SHAPE
    out = {}
    for name, cfg in cfgs.items():
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for _ in range(2):   # compile + warm up
            torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do)
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
    cfg = ts.default_config(P_HEAD, 8)
    rows = []
    print("\nhost overhead (float32, default blocks): ms per call; gpu = CUDA kernel time of one call")
    print(f"{'B':>3} {'N':>7} {'d':>5} | {'fwd gpu':>8} {'fwd host':>8} {'fwd timed':>9} | "
          f"{'f+b gpu':>8} {'f+b host':>8} {'f+b timed':>9}")
    for B, N, d, K in shapes:
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        fwd = lambda: ts.causal_resolvent_scan_triton(*[x.detach() for x in xs], config=cfg)
        fb = lambda: torch.autograd.grad(ts.causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do)
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
    sig = {n: "constexpr" if n in constexprs else ("*i32" if n == "work_ptr" else "*fp32") if n.endswith("_ptr")
           else "i32" for n in fn.arg_names}
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
    """Registers / spilled bytes of the backward main passes for the sweep's block shapes, and of the version-4
    output pass and the version-5 main pass (static, no GPU)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("--ptxas compiles real kernels: unset TRITON_INTERPRET")
    BK = ts._next_pow2(K)
    print(f"triton {triton.__version__}: main passes compiled for sm_{arch}, K = {K}; registers / spilled bytes "
          f"per thread (255 registers is the cap; spilled bytes > 0 = local-memory traffic every step)")
    rows = []
    for L, cfgs in SWEEP_BWD.items():
        for bp, nw in cfgs:
            r, sp = ptxas_usage(ts._bwd_main_kernel, {"L": L, "BK": BK, "BP": bp}, nw, arch)
            rows.append({"bwd_loop": "scan", "block_t": L, "block_p": bp, "num_warps": nw, "regs": r,
                         "spill_bytes": sp})
            print(f"  v1 _bwd_main_kernel     L={L:>3} bp={bp:>3} nw={nw}         : {r:>4} regs {sp:>5} B spilled",
                  flush=True)
    for L in (16, 64):
        for bp, nw, st in SWEEP_BWD_V3:
            for split in (False, True) if (L, bp, nw, st) == (16, 32, 1, 1) else (False,):
                consts = {"L": L, "BK": BK, "BP": bp, "SPLIT_P": split, "STAGES": st}
                r, sp = ptxas_usage(ts._bwd_main_seq_kernel, consts, nw, arch)
                rows.append({"bwd_loop": "sequential", "block_t": L, "block_p": bp, "num_warps": nw, "stages": st,
                             "split_p": split, "regs": r, "spill_bytes": sp})
                print(f"  v3 _bwd_main_seq_kernel L={L:>3} bp={bp:>3} nw={nw} stages={st}"
                      f"{' split' if split else '      '}: {r:>4} regs {sp:>5} B spilled", flush=True)
    # version 4's output pass and version 5's main pass (chunks of 64, a whole head of 64 channels per program)
    BK8 = max(8, BK)
    for name, fn, extra in (("v4 _y_chunk_mm (MODE 1)", ts._y_chunk_mm_kernel, dict(MODE=1, G_IN=False, W3D=False)),
                            ("v4 _y_chunk_mm factored", ts._y_chunk_mm_kernel,
                             dict(MODE=1, G_IN=False, W3D=False, WF=1, WF_RANGE=ts.ScanConfig().w_factor_range)),
                            ("v5 _bwd_chunk_mm", ts._bwd_chunk_mm_kernel, dict(SPLIT_P=False))):
        for LS in (16, 32):
            for nw in (4, 8):
                consts = {"LS": LS, "NS": 64 // LS, "BK": BK8, "BP": 64, "PREC": "ieee", **extra}
                r, sp = ptxas_usage(fn, consts, nw, arch)
                rows.append({"kernel": fn.__name__, "block_sub": LS, "num_warps": nw, "regs": r, "spill_bytes": sp})
                print(f"  {name:<23} sub={LS:>3} bp= 64 nw={nw}         : {r:>4} regs {sp:>5} B spilled", flush=True)
    return rows


def main():
    global SWEEP_SHAPE
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if "--help" in flags or "-h" in sys.argv[1:]:
        print(__doc__)
        return
    for f in flags:
        if f == "--ptxas" or f.startswith("--ptxas="):
            ptxas_table(int(f.split("=", 1)[1]) if "=" in f else 90)
            return
    path = args[0] if args else "results/kernel_bench.json"
    quick = "--quick" in flags
    loops = ts.TIME_LOOPS
    t_start = time.time()
    deadline = float("inf")
    bwd_loops = (ts.ScanConfig().bwd_loop,)   # the library's default backward unless --bwd-loop says otherwise
    grid_ns = None
    grid_ios = [torch.float32]
    sweep_ls = (16, 32, 64)
    for f in flags:
        if f.startswith("--time-loop="):
            loops = tuple(f.split("=", 1)[1].split(","))
            for loop in loops:
                ts.ScanConfig(time_loop=loop)   # ValueError naming the allowed values
        elif f.startswith("--bwd-loop="):
            value = f.split("=", 1)[1]
            bwd_loops = ts.BWD_LOOPS if value in ("both", "all") else tuple(value.split(","))
            for loop in bwd_loops:
                ts.ScanConfig(bwd_loop=loop, block_t=32)   # ValueError naming the allowed values
        elif f.startswith("--grid-n="):
            grid_ns = [int(n) for n in f.split("=", 1)[1].split(",")]
        elif f.startswith("--grid-io="):
            grid_ios = [getattr(torch, n) for n in f.split("=", 1)[1].split(",")]
        elif f.startswith("--sweep-l="):
            sweep_ls = tuple(int(n) for n in f.split("=", 1)[1].split(","))
        elif f.startswith("--sweep-n="):
            SWEEP_SHAPE = (1, int(f.split("=", 1)[1]), 1024, 8)   # read by sweep_configs and profile_kernels
        elif f.startswith("--deadline-s="):
            deadline = t_start + float(f.split("=", 1)[1])
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "head_size": P_HEAD, "cmd": " ".join(sys.argv), "sweep_and_profile_shape": SWEEP_SHAPE}

    def save():   # after every section and row: a run stopped at its time limit keeps what it measured
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    bw = copy_bandwidth()
    res["copy_bytes_per_s"] = bw
    print(f"device {res['device']}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"device-to-device copy: {bw / 1e12:.2f} TB/s (read + write)", flush=True)
    if "--no-check" not in flags:
        res["check"] = correctness(time_loops=loops, bwd_loops=bwd_loops)
        save()

    grid = [(1, 2048, 1024, 8), (1, 16384, 1024, 8), (1, 65536, 1024, 8), (1, 262144, 1024, 8),
            (1, 1048576, 1024, 8), (8, 8192, 1024, 8), (1, 65536, 1024, 4), (1, 65536, 1024, 16),
            (4, 16384, 512, 8)]
    dtypes = [torch.float32, torch.bfloat16]
    if "--no-grid" in flags:
        grid = []
    if quick:
        grid = [(1, 16384, 1024, 8), (1, 262144, 1024, 8)]
        dtypes = [torch.float32]
    if grid_ns is not None:
        grid = [(1, n, GRID_N_D_MODEL, 8) for n in grid_ns]
        dtypes = grid_ios
    rows = []
    short = {"scan": "scan", "sequential": "seq", "chunked": "chk"}
    print("\nloop: forward scan = v1 (associative scan in a chunk), seq = v2 (sequential t loop in a chunk) / "
          "backward v1 (associative scans) or v3 (sequential walks). seq/scan = forward loops' time ratio "
          "(same backward), v3/v1 = backward loops' f+b time ratio (same forward); < 1: the newer faster")
    print(f"\n{'B':>2} {'N':>8} {'d':>5} {'K':>3} {'io':>5} {'loop':>7} | {'fwd ms':>8} {'fwd %cp':>7} | "
          f"{'f+b ms':>8} {'f+b %cp':>7} | {'mem f MiB':>9} {'mem fb MiB':>10} ok | seq/scan fwd f+b | v3/v1 f+b",
          flush=True)
    for dtype in dtypes:
        for (B, N, d, K) in grid:
            if dtype == torch.bfloat16 and grid_ns is None and (B, N, d, K) not in [(1, 65536, 1024, 8),
                                                                               (1, 1048576, 1024, 8)]:
                continue
            by_loop = {}
            for time_loop, bwd_loop in [(t, b) for t in loops for b in bwd_loops]:
                name = f"{short[time_loop]}/{BWD_SHORT[bwd_loop]}"
                try:
                    t_f, t_fb, m_f, m_fb, ok = time_bk(B, N, d, K, dtype, loop_cfg(time_loop, K, bwd_loop))
                except torch.OutOfMemoryError as e:
                    print(f"{B:>2} {N:>8} {d:>5} {K:>3} {name:>7} OOM {e}")
                    torch.cuda.empty_cache()
                    continue
                bf, bfb = bk_bytes(B, N, d, K, dtype)
                r = dict(B=B, N=N, d_model=d, K=K, io=str(dtype).split(".")[-1], time_loop=time_loop,
                         bwd_loop=bwd_loop, fwd_ms=t_f, fwdbwd_ms=t_fb,
                         fwd_bytes=bf, fwdbwd_bytes=bfb, fwd_frac_copy=bf / (t_f * 1e-3) / bw,
                         fwdbwd_frac_copy=bfb / (t_fb * 1e-3) / bw, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb,
                         grads_finite=ok)
                rows.append(r)
                res["grid"] = rows
                save()
                by_loop[time_loop, bwd_loop] = r
                ratio = ""
                if time_loop == "sequential" and ("scan", bwd_loop) in by_loop:
                    r["seq_over_scan_fwd"] = t_f / by_loop["scan", bwd_loop]["fwd_ms"]
                    r["seq_over_scan_fwdbwd"] = t_fb / by_loop["scan", bwd_loop]["fwdbwd_ms"]
                    ratio = f"{r['seq_over_scan_fwd']:.2f} {r['seq_over_scan_fwdbwd']:.2f}"
                ratio_bwd = ""
                if bwd_loop == "chunked" and (time_loop, "sequential") in by_loop:
                    r["v5_over_v3_fwdbwd"] = t_fb / by_loop[time_loop, "sequential"]["fwdbwd_ms"]
                    ratio_bwd = f"v5/v3 {r['v5_over_v3_fwdbwd']:.2f}"
                if bwd_loop == "sequential" and (time_loop, "scan") in by_loop:
                    r["v3_over_v1_fwdbwd"] = t_fb / by_loop[time_loop, "scan"]["fwdbwd_ms"]
                    ratio_bwd = f"{r['v3_over_v1_fwdbwd']:.2f}"
                print(f"{B:>2} {N:>8} {d:>5} {K:>3} {r['io']:>5} {name:>7} | "
                      f"{t_f:8.3f} {100 * r['fwd_frac_copy']:6.1f}% | "
                      f"{t_fb:8.3f} {100 * r['fwdbwd_frac_copy']:6.1f}% | {m_f:9.0f} {m_fb:10.0f} {ok} | "
                      f"{ratio:>16} | {ratio_bwd}", flush=True)
    res["grid"] = rows

    if "--no-compare" not in flags:
        cmp_rows = []
        d, K = 1024, 8
        Ns = [2048, 4096, 8192, 16384, 32768, 65536] if not quick else [2048, 8192]
        step = None
        print(f"\ncompare (batch 1, d_model {d}; BK K={K} shifts = 16 real state numbers per channel; "
              f"Mamba state 16; SDPA flash bf16 head 64). ms fwd / fwd+bwd", flush=True)
        for N in Ns:
            r = {"N": N}
            for io in (torch.float32, torch.bfloat16):
                for time_loop, bwd_loop in [(t, b) for t in loops for b in bwd_loops]:
                    t_f, t_fb, m_f, m_fb, ok = time_bk(1, N, d, K, io, loop_cfg(time_loop, K, bwd_loop))
                    key = ("bk_triton_" + {"scan": "", "sequential": "seq_", "chunked": "chk_"}[time_loop]
                           + {"scan": "", "sequential": "v3bwd_", "chunked": "v5bwd_"}[bwd_loop]
                           + str(io).split(".")[-1])
                    r[key] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb,
                                  time_loop=time_loop, bwd_loop=bwd_loop)
            if N <= 4096 and "--no-reference" not in flags:
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
            cmp_rows.append(r)
            res["compare"] = cmp_rows
            save()
            fmt = lambda k: (f"{r[k]['fwd_ms']:.3f}/{r[k]['fwdbwd_ms']:.3f}" if k in r and "fwd_ms" in r[k]
                             else ("err" if k in r else "-"))
            print(f"N={N:>6}  bk f32 {fmt('bk_triton_float32')}  bk bf16 {fmt('bk_triton_bfloat16')}  "
                  f"bk-seq f32 {fmt('bk_triton_seq_float32')}  bk-seq bf16 {fmt('bk_triton_seq_bfloat16')}  "
                  f"bk-seq-v3bwd f32 {fmt('bk_triton_seq_v3bwd_float32')}  "
                  f"bk-seq-v3bwd bf16 {fmt('bk_triton_seq_v3bwd_bfloat16')}  "
                  f"bk-chk-v3bwd f32 {fmt('bk_triton_chk_v3bwd_float32')}  "
                  f"bk-chk-v3bwd bf16 {fmt('bk_triton_chk_v3bwd_bfloat16')}  "
                  f"bk-chk-v5bwd f32 {fmt('bk_triton_chk_v5bwd_float32')}  "
                  f"recurrent {fmt('torch_recurrent_f32')}  compiled {fmt('torch_compiled_step_f32')}  "
                  f"mambapy {fmt('mambapy_pscan_f32')}  sdpa {fmt('sdpa_flash_bf16')}", flush=True)
            g = r.get("fwdbwd_graph_ms", {})
            if "bk_float32" in g:
                print(f"   fwd+bwd from CUDA graphs (default blocks): bk f32 {g['bk_float32']:.3f}  bk bf16 "
                      f"{g['bk_bfloat16']:.3f}  sdpa {g['sdpa_flash_bf16']:.3f}  flash/bk f32 "
                      f"{g['sdpa_flash_bf16'] / g['bk_float32']:.2f}  bf16 {g['sdpa_flash_bf16'] / g['bk_bfloat16']:.2f}",
                      flush=True)
            for k, v in r.items():
                if isinstance(v, dict) and "error" in v:
                    print(f"   {k}: {v['error']}")
        res["compare"] = cmp_rows

    if "--small-n" in flags:
        small_n(save, res, deadline)
        save()
    if "--compile-check" in flags:
        res["compile_check"] = compile_check()
        save()
    if "--host" in flags:
        res["host_overhead"] = host_overhead()
        save()
    if "--profile" in flags:      # default blocks first: a run stopped during the sweep keeps them
        res["profile"] = profile_kernels({f"default, {t} forward, bwd {BWD_SHORT[b]}": loop_cfg(t, 8, b)
                                          for t in loops for b in bwd_loops})
        save()
    if "--sweep-chunked" in flags or "--sweep-chunked=fb" in flags:
        best = sweep_chunked(save, res, deadline, fb_only="--sweep-chunked=fb" in flags)
        if "--profile" in flags and best is not None:
            res.setdefault("profile", {}).update(profile_kernels({"fastest v4 forward of the sweep": best}))
        save()
    if "--sweep-v5" in flags:
        best = sweep_v5(save, res, deadline)
        if "--profile" in flags and best is not None:
            res.setdefault("profile", {}).update(profile_kernels({"fastest v5 backward of the sweep": best}))
        save()
    if "--sweep-wf" in flags:
        sweep_wf(save, res, deadline)
        save()
    if "--sweep" in flags:
        res["sweep"] = sweep_configs(save, res, sweep_ls, loops, bwd_loops, fwd="--sweep-no-fwd" not in flags,
                                     deadline=deadline)
        best = best_v3_config(res)
        if "--profile" in flags and best is not None:
            res["profile"].update(profile_kernels({"fastest v3 of the sweep": best}))
    save()
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
