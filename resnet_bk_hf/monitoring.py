"""Spectral monitoring of a ResNet-BK model during training: a TrainerCallback and a stability dashboard.

Every `every_n_steps` the callback runs the model (no grad) on a fixed probe batch, reads each layer's
Hamiltonian per head (`theory.model_operators`: hooks and the layer's own `hamiltonian(...)`; nothing runs
inside the mixer) and measures, per layer l, head h, shift k and probe row b:

    s2            ||K(z_hk)||_S2, K = |v|^{1/2} (H0 - z)^{-1} v^{1/2} (the Birman–Schwinger operator)
    s2_bound      sqrt((1/eta) sum_t v_t^2 Im R0(z)_tt)  (exact Ward-identity bound; `theory.operators`)
    s2_bound_simple  ||v||_2 / eta
    cond          condition number of H - z: max_j |E_j - z| / min_j |E_j - z|
    g_margin      1 - eta max_t |g_t|, g the causal diagonal the layer uses (|g_t| <= 1/eta: margin in [0, 1])
    s1            ||K||_S1 (only with compute_s1=True: one SVD per operator)

and logs, per layer, the worst case over heads, shifts and rows (`spectral/layer{l}/...`), plus the per-head
maximum of s2 (`spectral/layer{l}/head{h}/s2`). With `max_s2`, a head whose s2 exceeds it has its potential
(its row among `BKLayer.potential_rows()` of in_proj, and a learned positional bias) multiplied by
max_s2 / s2 after the optimizer step: K is linear in v, so this is exact without the potential clamp and an
under-correction with it (c tanh(s y / c) >= s c tanh(y / c)). Clipping a layer changes the input of the layers
above it, so the probe is measured again and clipping repeated, at most once per layer; `clipped` records the
scales and the largest s2 left.

The dashboard writes the scalars to TensorBoard (`tensorboard_dir`, needs the `tensorboard` package) and a
PNG summary (`png_path`) at the end of training, or on demand with `plot_stability_dashboard`.
"""
from __future__ import annotations

import math
import warnings

from collections import defaultdict
from pathlib import Path

import torch
from transformers import TrainerCallback

from .theory.model_operators import LayerHamiltonian, bk_layers, model_hamiltonians
from .theory.operators import (
    birman_schwinger_lattice,
    dense_hamiltonian,
    s2_bound_lattice,
    s2_bound_lattice_simple,
    schatten_norm,
)
from .theory.scattering import causal_green

LAYER_METRICS = ("s2_max", "s2_tightness_max", "s2_simple_tightness_max", "cond_max", "g_margin_min", "s1_max")


def layer_spectral_metrics(layer: LayerHamiltonian, compute_s1: bool = False) -> dict[str, torch.Tensor]:
    """Per (row b, head h, shift k) metrics of one layer, each (B, H, K) float64."""
    v = layer.v[:, :, None, :]                          # (B, H, 1, N)
    hop = layer.hop[:, :, None, :]
    z = layer.z[None, :, :]                              # (1, H, K)
    eta = z.imag
    K = birman_schwinger_lattice(v, hop, z, layer.h0_diag)   # (B, H, K, N, N)
    out = {"s2": schatten_norm(K, 2), "s2_bound": s2_bound_lattice(v, hop, z, layer.h0_diag),
           "s2_bound_simple": s2_bound_lattice_simple(v, z).expand(K.shape[:3])}
    if compute_s1:
        out["s1"] = schatten_norm(K, 1)
    E = torch.linalg.eigvalsh(dense_hamiltonian(layer.a, layer.hop))   # (B, H, N)
    dist = (E[:, :, None, :].to(z.dtype) - z[..., None]).abs()        # (B, H, K, N)
    out["cond"] = dist.amax(-1) / dist.amin(-1)
    g = causal_green(layer.a[:, :, None, :], hop, z)
    out["g_margin"] = 1 - eta * g.abs().amax(-1)
    return out


def spectral_report(model, input_ids: torch.Tensor, attention_mask=None, compute_s1: bool = False) -> dict:
    """{"layers": {l: per-layer scalars}, "heads": {(l, h): max s2}} for the probe batch."""
    was_training = model.training
    model.eval()
    try:
        layers = model_hamiltonians(model, input_ids, attention_mask)
    finally:
        model.train(was_training)
    report = {"layers": {}, "heads": {}}
    for layer in layers:
        m = layer_spectral_metrics(layer, compute_s1)
        scalars = {"s2_max": float(m["s2"].max()),
                   "s2_tightness_max": float((m["s2"] / m["s2_bound"]).max()),
                   "s2_simple_tightness_max": float((m["s2"] / m["s2_bound_simple"]).max()),
                   "cond_max": float(m["cond"].max()),
                   "g_margin_min": float(m["g_margin"].min())}
        if compute_s1:
            scalars["s1_max"] = float(m["s1"].max())
        report["layers"][layer.layer] = scalars
        for h, value in enumerate(m["s2"].amax(dim=(0, 2)).tolist()):
            report["heads"][(layer.layer, h)] = value
    return report


@torch.no_grad()
def clip_potential_s2(model, head_s2: dict, max_s2: float) -> dict:
    """Scale each head's potential by max_s2 / s2 where s2 > max_s2; returns {(layer, head): scale} applied."""
    applied = {}
    for mixer in bk_layers(model):
        rows = mixer.potential_rows()
        for h in range(mixer.num_heads):
            s2 = head_s2.get((mixer.layer_idx, h))
            if s2 is None:
                continue
            if not math.isfinite(s2):
                # a NaN/inf measurement says nothing about the right scale: scaling by it would write NaN or
                # zeros into the weights. Leave the head alone (the anomaly guard of training/, TrainingGuardCallback,
                # handles the run).
                warnings.warn(f"Schatten norm of layer {mixer.layer_idx} head {h} is {s2}: not clipped")
                continue
            if s2 <= max_s2:
                continue
            scale = max_s2 / s2
            mixer.in_proj.weight[rows.start + h].mul_(scale)
            if mixer.in_proj.bias is not None:
                mixer.in_proj.bias[rows.start + h].mul_(scale)
            table = getattr(mixer, "positional_potential", None)
            if table is not None and table.requires_grad:
                table[:, h].mul_(scale)
            applied[(mixer.layer_idx, h)] = scale
    return applied


class SpectralMonitorCallback(TrainerCallback):
    """Schatten-norm monitoring (and optional clipping) plus a stability dashboard; see the module doc.

    Args:
        probe_input_ids: (B, N) token ids measured every time; None = the first training batch (2 rows).
        every_n_steps: measure at step 0 and every this many optimizer steps.
        max_s2: clip heads whose ||K||_S2 exceeds it (None: monitor only).
        tensorboard_dir: write TensorBoard scalars there. png_path: dashboard PNG written at train end.
        compute_s1: also measure ||K||_S1 (an SVD per operator).
    """

    def __init__(self, probe_input_ids: torch.Tensor | None = None, every_n_steps: int = 50,
                 max_s2: float | None = None, tensorboard_dir: str | Path | None = None,
                 png_path: str | Path | None = None, compute_s1: bool = False):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if max_s2 is not None and not max_s2 > 0:
            raise ValueError(f"max_s2 must be > 0 or None, got {max_s2}")
        self.probe_input_ids = probe_input_ids
        self.every_n_steps = every_n_steps
        self.max_s2 = max_s2
        self.png_path = Path(png_path) if png_path is not None else None
        self.compute_s1 = compute_s1
        self.history: list[dict] = []
        self.clipped: list[dict] = []
        self._writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:   # torch raises this when the tensorboard package is missing
                raise ImportError("tensorboard_dir needs the tensorboard package: pip install tensorboard "
                                  "(or resnet_bk_hf[monitor])") from err
            self._writer = SummaryWriter(log_dir=str(tensorboard_dir))

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        if self.probe_input_ids is None and train_dataloader is not None:
            batch = next(iter(train_dataloader))
            self.probe_input_ids = batch["input_ids"][:2].clone()
        if model is not None and state.global_step == 0:
            self.measure(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step % self.every_n_steps == 0:
            self.measure(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None and (not self.history or self.history[-1]["step"] != state.global_step):
            self.measure(model, state.global_step)     # the final state, whatever every_n_steps
        if self._writer is not None:
            self._writer.flush()
        if self.png_path is not None and self.history:
            plot_stability_dashboard(self.history, self.png_path)

    def measure(self, model, step: int) -> dict:
        if self.probe_input_ids is None:
            raise ValueError("SpectralMonitorCallback needs probe_input_ids (or a Trainer train_dataloader)")
        device = next(model.parameters()).device
        report = spectral_report(model, self.probe_input_ids.to(device), compute_s1=self.compute_s1)
        record = {"step": step, "layers": report["layers"],
                  "heads": {f"{l}/{h}": v for (l, h), v in report["heads"].items()}}
        self.history.append(record)
        if self._writer is not None:
            for layer, scalars in report["layers"].items():
                for name, value in scalars.items():
                    self._writer.add_scalar(f"spectral/layer{layer}/{name}", value, step)
            for (layer, head), value in report["heads"].items():
                self._writer.add_scalar(f"spectral/layer{layer}/head{head}/s2", value, step)
        if self.max_s2 is not None:
            # Clipping layer l changes the input of layers > l: re-measure and clip again, at most once per layer.
            scales, heads = {}, report["heads"]
            for _ in range(len(report["layers"])):
                applied = clip_potential_s2(model, heads, self.max_s2)
                if not applied:
                    break
                for key, scale in applied.items():
                    scales[key] = scales.get(key, 1.0) * scale
                heads = spectral_report(model, self.probe_input_ids.to(device))["heads"]
            if scales:
                self.clipped.append({"step": step, "scales": {f"{l}/{h}": s for (l, h), s in scales.items()},
                                     "s2_max_after": max(heads.values())})
        return record


def plot_stability_dashboard(history: list[dict], path: str | Path, title: str = "ResNet-BK spectral stability"):
    """2 x 2 PNG: max ||K||_S2, its tightness against the Ward bound, cond(H - z), min |g| margin, per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    series = defaultdict(lambda: defaultdict(list))
    for record in history:
        for layer, scalars in record["layers"].items():
            for name, value in scalars.items():
                series[name][int(layer)].append(value)
    panels = [("s2_max", "max ||K(z)||_S2", False), ("s2_tightness_max", "max ||K||_S2 / Ward bound", False),
              ("cond_max", "max cond(H - z)", True), ("g_margin_min", "min (1 - eta max|g_t|)", False)]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (name, label, log) in zip(axes.flat, panels):
        for layer, values in sorted(series[name].items()):
            ax.plot(steps[:len(values)], values, marker="o", ms=3, label=f"layer {layer}")
        if name == "s2_tightness_max":
            ax.axhline(1.0, color="k", ls="--", lw=1, label="bound")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
