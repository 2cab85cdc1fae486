"""Benchmark of the fused Triton BK scan on one GPU (issue 3; DESIGN.md 2.6).

    PYTHONPATH=. python benchmarks/kernel_bench.py [results/kernel_bench.json] [--quick] [--no-compare]
        [--no-check] [--no-grid] [--sweep] [--profile] [--time-loop=scan|sequential]

Prints tables and writes JSON:
  * copy: device-to-device copy bandwidth (bytes read + written) measured in this run = the floor;
  * check: GPU correctness of the kernel vs the float64 recurrent reference (forward + all grads),
    for each forward time loop;
  * grid: forward and forward+backward time (triton.testing.do_bench, median) over (batch, N, d_model, K),
    the minimal bytes each must move, achieved bytes/s as a fraction of the copy bandwidth, peak memory;
    every row twice, once per forward time loop (`ScanConfig.time_loop`): "scan" = kernel version 1
    (tl.associative_scan inside a chunk), "seq" = version 2 (sequential loop over t inside a chunk, state
    in registers); the backward is version 1 in both, so f+b differs only by the forward;
  * compare (N = 2k..64k, batch 1, d_model 1024): BK Triton (both time loops), the PyTorch recurrent
    reference (and a torch.compile'd step loop), mambapy's parallel-scan selective scan (state 16),
    causal SDPA (flash).
Head size P = 64 channels (H = d_model / 64 heads). Times in ms. --time-loop=X times only that loop.
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
from resnet_bk_hf.kernels import recurrent  # noqa: E402
from resnet_bk_hf.kernels import triton_scan as ts  # noqa: E402

DEV = "cuda"
P_HEAD = 64


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


def loop_cfg(time_loop, K=8):
    """The default config with the given forward time loop ("scan" = v1, "sequential" = v2)."""
    return ts.default_config(P_HEAD, K, time_loop)


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


def correctness(checks=CHECKS, time_loops=ts.TIME_LOOPS):
    """Forward + every gradient vs the float64 recurrent reference, poisoned outputs, ragged N.

    The reference is computed once per case; the kernel runs once per forward time loop."""
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
        for time_loop in time_loops:
            key = f"{name} [{time_loop}]"
            ts.POISON = True
            try:
                o_k, (g_k, y_k) = ts.causal_resolvent_scan_triton(*k_in[:7], (k_in[7], k_in[8]),
                                                                  config=loop_cfg(time_loop, K))
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
            out[key] = {"time_loop": time_loop, "max_rel_err": worst, "tol": tol, "finite": finite,
                        "pass": finite and worst <= tol, "errs": errs}
            print(f"check {key:41s} max rel err {worst:.2e} (tol {tol:g}) finite={finite} "
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


# ----------------------------------------------------------------------------- tuning


SWEEP_SHAPE = (1, 262144, 1024, 8)
SWEEP_FWD = [(16, 4), (32, 4), (64, 8), (16, 2)]            # (block_p, num_warps) of the forward
SWEEP_BWD = [(8, 4), (16, 4), (16, 8), (32, 8), (64, 8)]     # (bwd_block_p, bwd_num_warps)


def sweep_configs(save, res, block_ts=(16, 32, 64)):
    """Forward (both time loops) and backward timed separately per chunk length L = block_t.

    The forward and the backward share L (the backward restarts from the forward's chunk-boundary
    states) but may use different channel blocks and warps (ScanConfig.bwd_block_p / bwd_num_warps)."""
    B, N, d, K = SWEEP_SHAPE
    out = []
    print(f"\nsweep B={B} N={N} d={d} K={K} f32: ms (median)", flush=True)
    for L in block_ts:
        xs = bk_inputs(B, N, d, K, torch.float32, grad=True)
        det = [x.detach() for x in xs]
        do = torch.randn(B, N, d // P_HEAD, P_HEAD, device=DEV)
        for tl_ in ts.TIME_LOOPS:
            for bp, nw in SWEEP_FWD:
                cfg = ts.ScanConfig(block_t=L, block_p=bp, chunk_block=16, num_warps=nw, time_loop=tl_)
                try:
                    with torch.no_grad():
                        t = bench(lambda: ts.causal_resolvent_scan_triton(*det, config=cfg), rep=100)
                except Exception as e:  # noqa: BLE001
                    print(f"  fwd L={L} {tl_} bp={bp} nw={nw}: {repr(e)[:200]}", flush=True)
                    continue
                out.append({"pass": "fwd", "block_t": L, "time_loop": tl_, "block_p": bp, "num_warps": nw, "ms": t})
                print(f"  fwd L={L:>3} {tl_:>10} bp={bp:>3} nw={nw}: {t:8.3f}", flush=True)
        for bp, nw in SWEEP_BWD:
            cfg = ts.ScanConfig(block_t=L, block_p=32, chunk_block=16, num_warps=4, time_loop="sequential",
                                bwd_block_p=bp, bwd_num_warps=nw)
            try:
                o = ts.causal_resolvent_scan_triton(*xs, config=cfg)[0]
                t = bench(lambda: torch.autograd.grad(o, xs, do, retain_graph=True), rep=100)
                del o
            except Exception as e:  # noqa: BLE001
                print(f"  bwd L={L} bp={bp} nw={nw}: {repr(e)[:200]}", flush=True)
                continue
            out.append({"pass": "bwd", "block_t": L, "block_p": bp, "num_warps": nw, "ms": t})
            print(f"  bwd L={L:>3} bp={bp:>3} nw={nw}: {t:8.3f}", flush=True)
        res["sweep"] = out
        save()
        del xs, det, do
        torch.cuda.empty_cache()
    return out


def profile_kernels(cfgs=None):
    """CUDA time per kernel of one forward + backward (torch.profiler), to see where the time goes."""
    from torch.profiler import ProfilerActivity, profile
    B, N, d, K = SWEEP_SHAPE
    cfgs = cfgs or {"default": ts.default_config(P_HEAD, K),
                    "L16 bwd-bp16-nw8": ts.ScanConfig(block_t=16, block_p=32, chunk_block=16, num_warps=4,
                                                      bwd_block_p=16, bwd_num_warps=8)}
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
        out[name] = [{"kernel": k, "ms": ms, "calls": c} for k, ms, c in rows]
        print(f"\nprofile {name} {cfg}: CUDA ms per kernel, one fwd+bwd at B={B} N={N} d={d} K={K}")
        for k, ms, c in rows[:14]:
            print(f"  {ms:9.3f} ms  x{c:<3} {k[:90]}")
        del xs, do
        torch.cuda.empty_cache()
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    if "--help" in flags or "-h" in sys.argv[1:]:
        print(__doc__)
        return
    path = args[0] if args else "results/kernel_bench.json"
    quick = "--quick" in flags
    loops = ts.TIME_LOOPS
    for f in flags:
        if f.startswith("--time-loop="):
            loops = (f.split("=", 1)[1],)
            ts.ScanConfig(time_loop=loops[0])   # ValueError naming the allowed values
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
           "head_size": P_HEAD, "cmd": " ".join(sys.argv)}

    def save():   # after every section and row: a run stopped at its time limit keeps what it measured
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    bw = copy_bandwidth()
    res["copy_bytes_per_s"] = bw
    print(f"device {res['device']}  torch {torch.__version__}  triton {triton.__version__}")
    print(f"device-to-device copy: {bw / 1e12:.2f} TB/s (read + write)", flush=True)
    if "--no-check" not in flags:
        res["check"] = correctness(time_loops=loops)
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
    rows = []
    short = {"scan": "scan", "sequential": "seq"}
    print("\nloop: scan = v1 (associative scan in a chunk), seq = v2 (sequential t loop in a chunk); "
          "backward v1 in both. seq/scan = time ratio (< 1: v2 faster)")
    print(f"\n{'B':>2} {'N':>8} {'d':>5} {'K':>3} {'io':>5} {'loop':>4} | {'fwd ms':>8} {'fwd %cp':>7} | "
          f"{'f+b ms':>8} {'f+b %cp':>7} | {'mem f MiB':>9} {'mem fb MiB':>10} ok | seq/scan fwd f+b", flush=True)
    for dtype in dtypes:
        for (B, N, d, K) in grid:
            if dtype == torch.bfloat16 and (B, N, d, K) not in [(1, 65536, 1024, 8), (1, 1048576, 1024, 8)]:
                continue
            by_loop = {}
            for time_loop in loops:
                try:
                    t_f, t_fb, m_f, m_fb, ok = time_bk(B, N, d, K, dtype, loop_cfg(time_loop, K))
                except torch.OutOfMemoryError as e:
                    print(f"{B:>2} {N:>8} {d:>5} {K:>3} {short[time_loop]:>4} OOM {e}")
                    torch.cuda.empty_cache()
                    continue
                bf, bfb = bk_bytes(B, N, d, K, dtype)
                r = dict(B=B, N=N, d_model=d, K=K, io=str(dtype).split(".")[-1], time_loop=time_loop,
                         fwd_ms=t_f, fwdbwd_ms=t_fb,
                         fwd_bytes=bf, fwdbwd_bytes=bfb, fwd_frac_copy=bf / (t_f * 1e-3) / bw,
                         fwdbwd_frac_copy=bfb / (t_fb * 1e-3) / bw, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb,
                         grads_finite=ok)
                rows.append(r)
                res["grid"] = rows
                save()
                by_loop[time_loop] = r
                ratio = ""
                if time_loop == "sequential" and "scan" in by_loop:
                    r["seq_over_scan_fwd"] = t_f / by_loop["scan"]["fwd_ms"]
                    r["seq_over_scan_fwdbwd"] = t_fb / by_loop["scan"]["fwdbwd_ms"]
                    ratio = f"{r['seq_over_scan_fwd']:.2f} {r['seq_over_scan_fwdbwd']:.2f}"
                print(f"{B:>2} {N:>8} {d:>5} {K:>3} {r['io']:>5} {short[time_loop]:>4} | "
                      f"{t_f:8.3f} {100 * r['fwd_frac_copy']:6.1f}% | "
                      f"{t_fb:8.3f} {100 * r['fwdbwd_frac_copy']:6.1f}% | {m_f:9.0f} {m_fb:10.0f} {ok} | {ratio}",
                      flush=True)
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
                for time_loop in loops:
                    t_f, t_fb, m_f, m_fb, ok = time_bk(1, N, d, K, io, loop_cfg(time_loop, K))
                    key = "bk_triton_" + ("seq_" if time_loop == "sequential" else "") + str(io).split(".")[-1]
                    r[key] = dict(fwd_ms=t_f, fwdbwd_ms=t_fb, fwd_peak_mib=m_f, fwdbwd_peak_mib=m_fb,
                                  time_loop=time_loop)
            if N <= 4096:
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
            cmp_rows.append(r)
            res["compare"] = cmp_rows
            save()
            fmt = lambda k: (f"{r[k]['fwd_ms']:.3f}/{r[k]['fwdbwd_ms']:.3f}" if k in r and "fwd_ms" in r[k]
                             else ("err" if k in r else "-"))
            print(f"N={N:>6}  bk f32 {fmt('bk_triton_float32')}  bk bf16 {fmt('bk_triton_bfloat16')}  "
                  f"bk-seq f32 {fmt('bk_triton_seq_float32')}  bk-seq bf16 {fmt('bk_triton_seq_bfloat16')}  "
                  f"recurrent {fmt('torch_recurrent_f32')}  compiled {fmt('torch_compiled_step_f32')}  "
                  f"mambapy {fmt('mambapy_pscan_f32')}  sdpa {fmt('sdpa_flash_bf16')}", flush=True)
            for k, v in r.items():
                if isinstance(v, dict) and "error" in v:
                    print(f"   {k}: {v['error']}")
        res["compare"] = cmp_rows

    if "--sweep" in flags:
        res["sweep"] = sweep_configs(save, res)
    if "--profile" in flags:
        res["profile"] = profile_kernels()
    save()
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
