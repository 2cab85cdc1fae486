"""The BK layer: a sequence mixer that is the causal resolvent of a learned tridiagonal Hamiltonian.

Per head h and spectral shift z_k (docs/design.md 2.1, 2.5), from the token's hidden state x_t:

    v_t = clamp(potential(x_t) + positional bias)       a_t = h0_diag + v_t       hopping b_t > 0
    g_t = 1 / (a_t - z_k - b_t^2 g_{t-1})               y_t = g_t (u_t - b_t y_{t-1}),  u_t = values(x_t)
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))  ("resolvent" mode, readout C from x_t)
      or  feature_proj([Re g_t, Im g_t])    ("diag" mode: the seeds' original features)
    out_t = out_proj(o_t * silu(gate(x_t)))

`forward` is two steps, both public: `hamiltonian(x, ...)` builds (a, hop, z) and the masks' cuts as a
`BKHamiltonian`; the scan (`ops.bk.causal_resolvent_scan` / `causal_green`, which picks the backend: fused
Triton kernels, the CPU recurrent path, or the readable `naive` reference with `scan_backend="naive"`), the
readout and the gate follow. Every setting is a constructor argument: no model config is needed.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.bk import BACKENDS, BKState, ScanConfig, as_scan_config, causal_green, causal_resolvent_scan
from ..validation import check_bool, check_choice, check_float, check_int, check_range_pair, need

MODES = ("resolvent", "diag")
HOPPING_MODES = ("constant", "learned", "input")
POSITIONAL_POTENTIALS = (None, "prime_bump")


class BKHamiltonian(NamedTuple):
    """What the scan receives (real, in the scan dtype: float32, or float64 for float64 input).

    H_{b,h} = tridiagonal(a[b, :, h], hop[b, :, h]) per row and head; resolvents are taken at
    z[h, k] = z_re[h, k] + i z_im[h, k] (z_im >= eta_min > 0).
    """
    v: torch.Tensor      # (B, N, H) potential: clamp(in_proj potential rows + positional bias)
    a: torch.Tensor      # (B, N, H) diagonal h0_diag + v
    hop: torch.Tensor    # (B, N, H) hop[:, t] couples t-1 and t; 0 after padding and at a document start
    z_re: torch.Tensor   # (H, K)
    z_im: torch.Tensor   # (H, K)


def scan_precision(x: torch.Tensor) -> torch.Tensor:
    """The scan's inputs in float32 at least (float64 stays float64, for references and gradchecks)."""
    return x if x.dtype == torch.float64 else x.float()


def _plain_copy_(param: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        param.copy_(value)


def check_arguments(args: dict, where: Callable[[str], str] = "BKLayer.{}".format) -> None:
    """Check BKLayer's constructor arguments (`args`: name -> value); `where(name)` is the name a user set it under
    (ResNetBKConfig checks its mixer fields through this too, under its own field names)."""
    w = where
    check_int(w("hidden_size"), args["hidden_size"], 1)
    check_int(w("num_heads"), args["num_heads"], 1, args["hidden_size"])
    need(w("num_heads"), args["hidden_size"] % args["num_heads"] == 0, f"a divisor of hidden_size={args['hidden_size']}",
         args["num_heads"])
    check_int(w("num_shifts"), args["num_shifts"], 1, 256)
    check_choice(w("mode"), args["mode"], MODES)
    check_float(w("h0_diag"), args["h0_diag"])
    check_choice(w("hopping_mode"), args["hopping_mode"], HOPPING_MODES)
    check_float(w("hop_value"), args["hop_value"], 0.0, low_open=True)
    check_float(w("hop_max"), args["hop_max"], 0.0, low_open=True)
    if args["hopping_mode"] == "learned":   # the logit of hop_value / hop_max must exist
        need(w("hop_value"), args["hop_value"] < args["hop_max"], f"< hop_max={args['hop_max']} in learned mode",
             args["hop_value"])
    check_float(w("eta_min"), args["eta_min"], 0.0, low_open=True)
    check_range_pair(w("eta_init_range"), args["eta_init_range"], low_above=args["eta_min"])
    if args["lambda_init_range"] is not None:
        check_range_pair(w("lambda_init_range"), args["lambda_init_range"])
    check_float(w("potential_clamp"), args["potential_clamp"], 0.0, low_open=True, allow_none=True)
    check_float(w("feature_clamp"), args["feature_clamp"], 0.0, low_open=True, allow_none=True)
    check_choice(w("scan_backend"), args["scan_backend"], BACKENDS)
    check_choice(w("positional_potential"), args["positional_potential"], POSITIONAL_POTENTIALS)
    check_bool(w("positional_potential_learned"), args["positional_potential_learned"])
    check_float(w("prime_bump_eps"), args["prime_bump_eps"], 0.0, 1.0, low_open=True)
    check_float(w("prime_bump_scale"), args["prime_bump_scale"])
    check_int(w("positional_potential_length"), args["positional_potential_length"], 1, 16384)


class BKLayer(nn.Module):
    """The BK sequence mixer (module docstring). Input and output (B, N, hidden_size).

    Args:
        hidden_size, num_heads: width D and heads H (H divides D; P = D / H channels per head).
        num_shifts: spectral shifts K per head: the state size per channel.
        mode: "resolvent" (values + readout) or "diag" (features [Re g, Im g], no values).
        hopping_mode: "constant" (b = hop_value), "learned" (one b per head in (0, hop_max), starting at
            hop_value) or "input" (b_t = hop_max * sigmoid(linear(x_t))).
        h0_diag: diagonal of the free Hamiltonian (-2: the discrete Laplacian).
        eta_min: floor of Im z (|g_t| <= 1 / eta_min). eta_init_range: initial Im z, log-uniform over shifts.
        lambda_init_range: initial Re z, evenly inside the range; None = H0's band h0_diag -+ 2 hop_value.
        potential_clamp: v = c tanh(v_raw / c) (None: off). feature_clamp: bound on the diag features.
        positional_potential: None or "prime_bump": a bias on v by token position (`theory.primes`), a table of
            positional_potential_length rows (later positions use the last), trained if positional_potential_learned.
        scan_backend: "auto", "naive", "recurrent", "triton" or "parallel" (`ops/bk/dispatch.py`).
        scan_config: the Triton kernels' `ScanConfig` (or a dict of its fields); None = tuned defaults.
        layer_idx: the layer's index in a model (for hooks and reports); None standalone.
    """

    def __init__(self, hidden_size: int, num_heads: int, num_shifts: int, *, mode: str = "resolvent",
                 hopping_mode: str = "input", hop_value: float = 1.0, hop_max: float = 1.0, h0_diag: float = -2.0,
                 eta_min: float = 0.05, eta_init_range: Tuple[float, float] = (0.25, 2.0),
                 lambda_init_range: Optional[Tuple[float, float]] = None, potential_clamp: Optional[float] = 8.0,
                 feature_clamp: Optional[float] = 20.0, positional_potential: Optional[str] = None,
                 positional_potential_length: int = 1024, positional_potential_learned: bool = False,
                 prime_bump_eps: float = 0.5, prime_bump_scale: float = 1.0, scan_backend: str = "auto",
                 scan_config: ScanConfig | dict | None = None, layer_idx: Optional[int] = None):
        super().__init__()
        check_arguments(dict(hidden_size=hidden_size, num_heads=num_heads, num_shifts=num_shifts, mode=mode,
                             hopping_mode=hopping_mode, hop_value=hop_value, hop_max=hop_max, h0_diag=h0_diag,
                             eta_min=eta_min, eta_init_range=eta_init_range, lambda_init_range=lambda_init_range,
                             potential_clamp=potential_clamp, feature_clamp=feature_clamp,
                             positional_potential=positional_potential,
                             positional_potential_length=positional_potential_length,
                             positional_potential_learned=positional_potential_learned, prime_bump_eps=prime_bump_eps,
                             prime_bump_scale=prime_bump_scale, scan_backend=scan_backend))
        if lambda_init_range is None:   # the band of H0
            lambda_init_range = (h0_diag - 2 * hop_value, h0_diag + 2 * hop_value)
        D, H, K = hidden_size, num_heads, num_shifts
        self.hidden_size, self.num_heads, self.num_shifts, self.head_dim = D, H, K, D // H
        self.mode, self.hopping_mode, self.layer_idx = mode, hopping_mode, layer_idx
        self.hop_value, self.hop_max, self.h0_diag, self.eta_min = hop_value, hop_max, h0_diag, eta_min
        self.eta_init_range, self.lambda_init_range = tuple(eta_init_range), tuple(lambda_init_range)
        self.potential_clamp, self.feature_clamp = potential_clamp, feature_clamp
        self.positional_kind = positional_potential
        self.prime_bump_eps, self.prime_bump_scale = prime_bump_eps, prime_bump_scale
        self.scan_backend, self.scan_config = scan_backend, as_scan_config(scan_config)
        # One input projection, split into named parts (one matmul instead of five).
        self.split_sizes: Dict[str, int] = {"potential": H}
        if hopping_mode == "input":
            self.split_sizes["hopping"] = H
        if mode == "resolvent":
            self.split_sizes["values"] = D
            self.split_sizes["readout"] = 2 * H * K
        self.split_sizes["gate"] = D
        self.in_proj = nn.Linear(D, sum(self.split_sizes.values()), bias=True)
        if mode == "diag":
            self.feature_proj = nn.Linear(2 * H * K, D, bias=False)
        if hopping_mode == "learned":
            self.hopping_logit = nn.Parameter(torch.zeros(H))
        # z = shift_energy + i (eta_min + softplus(shift_width)): Im z >= eta_min > 0 always.
        self.shift_energy = nn.Parameter(torch.zeros(H, K))
        self.shift_width = nn.Parameter(torch.zeros(H, K))
        self.out_proj = nn.Linear(D, D, bias=False)
        self.out_proj.is_residual_output = True   # a model scales its init with depth (GPT-2 style)
        if positional_potential is not None:
            # A bias on the potential by token position; a frozen parameter when not learned.
            self.positional_potential = nn.Parameter(torch.zeros(positional_potential_length, H),
                                                     requires_grad=positional_potential_learned)
        if self.shift_energy.device.type != "meta":   # a model being loaded is built on "meta", then filled
            self.reset_shift_parameters()
            self.reset_positional_potential()

    # ------------------------------------------------------------------------------------------------ init

    def reset_shift_parameters(self, copy_: Callable = _plain_copy_) -> None:
        """Energies evenly inside lambda_init_range, widths log-uniform in eta_init_range, learned hopping at
        hop_value. `copy_(param, value)` writes each (a model passes one that skips loaded weights)."""
        H, K = self.num_heads, self.num_shifts
        lo, hi = self.lambda_init_range
        energy = torch.linspace(lo, hi, K + 2)[1:-1]
        e_lo, e_hi = self.eta_init_range
        eta = torch.exp(torch.linspace(math.log(e_lo), math.log(e_hi), K))
        width = torch.log(torch.expm1(torch.clamp(eta - self.eta_min, min=1e-6)))   # softplus^-1(eta - eta_min)
        copy_(self.shift_energy, energy.expand(H, K).clone())
        copy_(self.shift_width, width.expand(H, K).clone())
        if self.hopping_mode == "learned":
            p = self.hop_value / self.hop_max
            copy_(self.hopping_logit, torch.full((H,), math.log(p / (1 - p))))

    def reset_positional_potential(self, copy_: Callable = _plain_copy_) -> None:
        """The prime-bump table, the same for every head (nothing to do without a positional potential)."""
        if self.positional_kind == "prime_bump":
            from ..theory.primes import positional_prime_bump
            table = positional_prime_bump(self.positional_potential.shape[0], self.prime_bump_eps,
                                          self.prime_bump_scale)
            copy_(self.positional_potential, table[:, None].expand(-1, self.num_heads).to(torch.float32).clone())

    # ------------------------------------------------------------------------------------- the Hamiltonian

    def potential_rows(self) -> slice:
        """The rows of in_proj (weight and bias) whose outputs are the raw potential, one per head."""
        start = 0
        for name, size in self.split_sizes.items():
            if name == "potential":
                return slice(start, start + size)
            start += size
        raise AssertionError("in_proj always has potential rows")

    def shifts(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(z_re, z_im), each (H, K), in the scan dtype."""
        z_re = scan_precision(self.shift_energy)
        z_im = self.eta_min + F.softplus(scan_precision(self.shift_width))
        return z_re, z_im

    def hopping(self, raw: Optional[torch.Tensor], shape, dtype) -> torch.Tensor:
        """b_t (B, N, H) before the mask cuts; `raw` is in_proj's hopping part (input mode only)."""
        if self.hopping_mode == "constant":
            return torch.full(shape, self.hop_value, device=self.shift_energy.device, dtype=dtype)
        if self.hopping_mode == "learned":
            return (self.hop_max * torch.sigmoid(scan_precision(self.hopping_logit))).expand(shape)
        return self.hop_max * torch.sigmoid(scan_precision(raw))

    def positional_bias(self, positions: torch.Tensor) -> torch.Tensor:
        """(B, N, H) bias for token positions (B, N); positions past the table use its last entry."""
        table = scan_precision(self.positional_potential)
        return table[positions.clamp(max=table.shape[0] - 1)]

    def hamiltonian(self, x: torch.Tensor, *, attention_mask: Optional[torch.Tensor] = None,
                    prev_mask: Optional[torch.Tensor] = None, doc_start: Optional[torch.Tensor] = None,
                    positions: Optional[torch.Tensor] = None) -> BKHamiltonian:
        """The Hamiltonian this layer takes resolvents of for input x (B, N, hidden_size); the masks as in
        `forward`. Exactly what `forward` hands the scan."""
        self._check_input(x)
        positions = self._positions(positions, x, state=None)
        return self._hamiltonian(self._split(self.in_proj(x)), attention_mask, prev_mask, doc_start, positions)

    def _split(self, projected: torch.Tensor) -> Dict[str, torch.Tensor]:
        return dict(zip(self.split_sizes, projected.split(list(self.split_sizes.values()), dim=-1)))

    def _hamiltonian(self, parts, attention_mask, prev_mask, doc_start, positions) -> BKHamiltonian:
        v = scan_precision(parts["potential"])
        if positions is not None:
            v = v + self.positional_bias(positions)
        if self.potential_clamp is not None:
            v = self.potential_clamp * torch.tanh(v / self.potential_clamp)
        hop = self.hopping(parts.get("hopping"), v.shape, v.dtype)
        if attention_mask is not None:
            # A position after a padded one starts afresh: its hopping to the past is 0.
            m = attention_mask.to(hop.dtype)
            first = prev_mask.to(hop.dtype)[:, None] if prev_mask is not None else torch.ones_like(m[:, :1])
            hop = hop * torch.cat([first, m[:, :-1]], dim=1)[..., None]
        if doc_start is not None:
            # A packed document starts here: no hopping to the previous one, so both recursions restart.
            hop = hop * (~doc_start).to(device=hop.device, dtype=hop.dtype)[..., None]
        z_re, z_im = self.shifts()
        return BKHamiltonian(v=v, a=self.h0_diag + v, hop=hop, z_re=z_re, z_im=z_im)

    # ----------------------------------------------------------------------------------------------- forward

    def forward(self, x: torch.Tensor, *, state: Optional[BKState] = None,
                attention_mask: Optional[torch.Tensor] = None, prev_mask: Optional[torch.Tensor] = None,
                doc_start: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, BKState]:
        """x (B, N, hidden_size) -> (out (B, N, hidden_size), the BKState after position N).

        state: carried from the previous chunk (None = start of the sequence).
        attention_mask (B, N) of 0/1: a padded position adds no value and cuts the hopping to the next one.
        prev_mask (B,): the attention mask of the last position absorbed into `state`.
        doc_start (B, N) bool: True where a packed document starts (the recursions restart there).
        positions (B, N) long: token positions for the positional potential (unused without one;
            default 0..N-1 when no state is carried).
        """
        self._check_input(x, state)
        positions = self._positions(positions, x, state)
        parts = self._split(self.in_proj(x))
        ham = self._hamiltonian(parts, attention_mask, prev_mask, doc_start, positions)
        if self.mode == "resolvent":
            o, new_state = self._resolvent_readout(parts, ham, attention_mask, state)
        else:
            o, new_state = self._diag_features(ham, state, x.dtype)
        o = o.to(x.dtype) * F.silu(parts["gate"])
        return self.out_proj(o), new_state

    def _resolvent_readout(self, parts, ham: BKHamiltonian, attention_mask, state):
        B, N, _ = ham.a.shape
        H, K, P = self.num_heads, self.num_shifts, self.head_dim
        u = parts["values"].view(B, N, H, P)
        if attention_mask is not None:
            u = u * attention_mask.to(u.dtype)[:, :, None, None]
        c_re, c_im = parts["readout"].view(B, N, H, K, 2).unbind(-1)
        o, new_state = causal_resolvent_scan(ham.a, ham.hop, u, c_re, c_im, ham.z_re, ham.z_im, state=state,
                                             backend=self.scan_backend, scan_config=self.scan_config)
        return o.reshape(B, N, self.hidden_size), new_state

    def _diag_features(self, ham: BKHamiltonian, state, dtype):
        B, N, _ = ham.a.shape
        g, new_state = causal_green(ham.a, ham.hop, ham.z_re, ham.z_im, state=state, backend=self.scan_backend)
        feats = g.reshape(B, N, 2 * self.num_heads * self.num_shifts)   # [Re g, Im g] per head and shift
        if self.feature_clamp is not None:
            feats = feats.clamp(-self.feature_clamp, self.feature_clamp)
        return self.feature_proj(feats.to(dtype)), new_state

    # ---------------------------------------------------------------------------------------------- checks

    def state_shapes(self, batch: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """Shapes of BKState.g and BKState.y for a batch (y has 0 channels in diag mode)."""
        P = self.head_dim if self.mode == "resolvent" else 0
        return (batch, self.num_heads, self.num_shifts, 2), (batch, self.num_heads, self.num_shifts, P, 2)

    def _check_input(self, x: torch.Tensor, state: Optional[BKState] = None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"BKLayer input must have shape (batch, seq_len, {self.hidden_size}), "
                             f"got {tuple(x.shape)}")
        if state is not None:
            want = self.state_shapes(x.shape[0])
            if len(state) != 2 or (tuple(state[0].shape), tuple(state[1].shape)) != want:
                raise ValueError(f"BKLayer state must be BKState(g {want[0]}, y {want[1]}), got "
                                 f"{tuple(tuple(s.shape) for s in state)}")

    def _positions(self, positions, x: torch.Tensor, state) -> Optional[torch.Tensor]:
        """The positions the positional potential reads (None without one: positions matter to nothing else)."""
        if self.positional_kind is None or positions is not None:
            return positions if self.positional_kind is not None else None
        if state is not None:
            raise ValueError("a BKLayer with a positional potential needs `positions` when it carries a state "
                             "(where the previous chunk ended)")
        return torch.arange(x.shape[1], device=x.device).expand(x.shape[0], x.shape[1])

    def extra_repr(self) -> str:
        return (f"hidden_size={self.hidden_size}, heads={self.num_heads}, shifts={self.num_shifts}, "
                f"mode={self.mode}, hopping={self.hopping_mode}, scan_backend={self.scan_backend}")
