"""Readable references for the BK scan (DESIGN.md 2.1, 2.2, 2.5).

Everything here is plain PyTorch autograd over a Python loop on t. These
functions are the *definition* the fast paths (`recurrent.py`, `triton_scan.py`)
are tested against; they are slow on purpose and never used by default.

Conventions shared by every backend (B batch, N length, H heads, K shifts,
P channels per head):

    a      (B, N, H)     real  diagonal of H: a_t = h0_diag + v_t
    hop    (B, N, H)     real  hop[:, t] couples positions t-1 and t
                               (hop[:, 0] couples to the state carried in)
    u      (B, N, H, P)  real  values
    c_re, c_im (B, N, H, K)    readout C_t (complex, as a real pair)
    z_re, z_im (H, K)          shifts z = lambda + i eta, eta > 0
    state  (g (B, H, K, 2), y (B, H, K, P, 2)) real pairs, or None (= zeros)

    g_t = 1 / (a_t - z - hop_t^2 g_{t-1})
    y_t = g_t (u_t - hop_t y_{t-1})
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

Only ratio recursions are used: determinants overflow (DESIGN.md 2.2).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

State = Tuple[torch.Tensor, torch.Tensor]


def scan_dtypes(*tensors: torch.Tensor) -> Tuple[torch.dtype, torch.dtype]:
    """(real, complex) dtype of the scan state: float64 if any input is, else float32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64, torch.complex128
    return torch.float32, torch.complex64


def state_to_complex(state: Optional[State], batch: int, heads: int, shifts: int, channels: int,
                     ctype: torch.dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Real-pair state -> complex (g0, y0); zeros when no state is given."""
    if state is None:
        g0 = torch.zeros(batch, heads, shifts, dtype=ctype, device=device)
        y0 = torch.zeros(batch, heads, shifts, channels, dtype=ctype, device=device)
        return g0, y0
    g, y = state
    rtype = torch.float64 if ctype == torch.complex128 else torch.float32
    return (torch.view_as_complex(g.to(rtype).contiguous()),
            torch.view_as_complex(y.to(rtype).contiguous()))


def state_to_real(g: torch.Tensor, y: torch.Tensor) -> State:
    return torch.view_as_real(g), torch.view_as_real(y)


def causal_green_naive(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor,
                       g0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal diagonal g_t = [(H_{1:t} - z)^-1]_{t,t}, shape (B, N, H, K) complex.

    `g0` (B, H, K) complex is the value carried in from an earlier chunk.
    """
    rtype, ctype = scan_dtypes(a, hop, z_re, z_im)
    B, N, H = a.shape
    z = torch.complex(z_re.to(rtype), z_im.to(rtype))
    g = torch.zeros(B, H, z.shape[-1], dtype=ctype, device=a.device) if g0 is None else g0.to(ctype)
    out = []
    for t in range(N):
        b2 = (hop[:, t].to(rtype) ** 2)[..., None]
        g = 1.0 / (a[:, t].to(rtype)[..., None] - z - b2 * g)
        out.append(g)
    return torch.stack(out, dim=1)


def causal_resolvent_scan_naive(a, hop, u, c_re, c_im, z_re, z_im,
                                state: Optional[State] = None) -> Tuple[torch.Tensor, State]:
    """Reference causal BK scan. Returns (o (B, N, H, P) in u's dtype, final state)."""
    rtype, ctype = scan_dtypes(a, hop, u, c_re, c_im, z_re, z_im)
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    z = torch.complex(z_re.to(rtype), z_im.to(rtype))              # (H, K)
    g, y = state_to_complex(state, B, H, K, P, ctype, u.device)
    outs = []
    for t in range(N):
        b = hop[:, t].to(rtype)[..., None]                         # (B, H, 1)
        g = 1.0 / (a[:, t].to(rtype)[..., None] - z - b * b * g)   # (B, H, K)
        y = g[..., None] * (u[:, t].to(rtype)[:, :, None, :] - b[..., None] * y)  # (B, H, K, P)
        c = torch.complex(c_re[:, t].to(rtype), c_im[:, t].to(rtype))            # (B, H, K)
        outs.append((c.conj()[..., None] * y).real.sum(dim=2))     # (B, H, P)
    o = torch.stack(outs, dim=1).to(u.dtype)
    return o, state_to_real(g, y)


def full_green_diagonal(a: torch.Tensor, hop: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The seeds' non-causal diagonal G_tt = [(H - z)^-1]_{t,t} on the whole sequence.

    Stable left/right continued fractions (DESIGN.md 2.2):
        G_tt = 1 / (a_t - z - hop_t^2 gl_{t-1} - hop_{t+1}^2 gr_{t+1})
    a, hop: (..., N) real (hop[..., 0] is ignored: there is nothing before t=0);
    z: complex, broadcastable against (...). Returns (..., N) complex.
    It reads future positions: never use it in a causal model.
    """
    rtype, ctype = scan_dtypes(a, hop)
    a = a.to(rtype)
    b2 = hop.to(rtype) ** 2
    z = torch.as_tensor(z).to(ctype)
    N = a.shape[-1]
    zero = torch.zeros(torch.broadcast_shapes(a.shape[:-1], z.shape), dtype=ctype, device=a.device)
    left, gl = [], zero
    for t in range(N):
        b2t = b2[..., t] if t > 0 else torch.zeros_like(b2[..., 0])
        gl = 1.0 / (a[..., t] - z - b2t * gl)
        left.append(gl)
    right, gr = [None] * N, zero
    for t in range(N - 1, -1, -1):
        b2n = b2[..., t + 1] if t + 1 < N else torch.zeros_like(b2[..., 0])
        gr = 1.0 / (a[..., t] - z - b2n * gr)
        right[t] = gr
    out = []
    for t in range(N):
        lterm = b2[..., t] * left[t - 1] if t > 0 else 0.0
        rterm = b2[..., t + 1] * right[t + 1] if t + 1 < N else 0.0
        out.append(1.0 / (a[..., t] - z - lterm - rterm))
    return torch.stack(out, dim=-1)


def tridiagonal_hamiltonian(a: torch.Tensor, hop: torch.Tensor) -> torch.Tensor:
    """Dense H (N x N) from a (N,) and hop (N,) with hop[t] = H[t-1, t]. For tests and theory only."""
    N = a.shape[-1]
    Hm = torch.diag(a)
    if N > 1:
        Hm = Hm + torch.diag(hop[1:], 1) + torch.diag(hop[1:], -1)
    return Hm
