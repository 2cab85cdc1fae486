"""The figures of docs/theory.md, from a small ResNet-BK trained here on the built-in demo corpus.

1. prime_bump_potential.png    V_eps(x) for eps = 1 and 0.5 with the prime powers marked, and the positional
                               table (the model's bias by token position) with prime positions marked
2. stability_dashboard.png     SpectralMonitorCallback during the training run (TensorBoard scalars too)
3. spacing_statistics.png      unfolded level spacings of the trained model's Hamiltonians (every layer and
                               head, validation text) against the GOE / GUE surmises and Poisson
4. scattering_phase.png        per-token scattering phase phi_t(z_k) at the model's own shifts, and the
                               sequence's scattering phase delta(lambda) and spectral shift xi(lambda)

    PYTHONPATH=. python examples/theory_figures.py            # about 5 minutes on 2 CPU cores

Writes docs/figures/*.png, docs/data/theory_figures.json, the model to outputs/theory-demo-model and
TensorBoard events to runs/theory-demo. `--model DIR` skips training and uses a saved model instead.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM
from resnet_bk_hf.data import load_demo_corpus, tokenize_and_chunk
from resnet_bk_hf.monitoring import SpectralMonitorCallback
from resnet_bk_hf.theory.model_operators import model_hamiltonians
from resnet_bk_hf.theory.operators import dense_hamiltonian
from resnet_bk_hf.theory.primes import positional_prime_bump, prime_bump_potential, prime_power_coefficients
from resnet_bk_hf.theory.scattering import scattering_phase, spectral_shift, token_phases
from resnet_bk_hf.theory.spectra import (
    nearest_neighbor_spacings,
    poisson_spacing,
    spacing_fit,
    spacing_ratios,
    wigner_surmise,
)
from resnet_bk_hf.tokenization import load_tokenizer

# The demo's CPU preset (the model: section of resnet_bk_hf/demo_config.yaml), with the prime-bump positional
# potential switched on.
MODEL = {"hidden_size": 128, "num_hidden_layers": 4, "num_heads": 4, "num_shifts": 4,
         "positional_potential": "prime_bump", "positional_potential_learned": True,
         "positional_potential_length": 128}


def figure_potential(out: Path) -> dict:
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4))
    x = torch.linspace(0, math.log(130), 4000, dtype=torch.float64)
    centers, _, p, k = prime_power_coefficients(130, 0.5)
    ax0.plot(x, prime_bump_potential(x, 0.05), color="tab:purple", lw=1, label="eps = 0.05")
    for ax in (ax0, ax1):
        for c, kk in zip(centers.tolist(), k.tolist()):
            ax.axvline(c, color="k" if kk == 1 else "tab:orange", lw=0.6, alpha=0.4 if kk == 1 else 0.8)
        ax.set(xlabel="x  (lines: log p black, log p^k, k >= 2, orange)", ylabel="V_eps(x)")
    ax0.set_title("V_eps(x) = sum alpha_{p,k} psi_eps(x - k log p): narrow bumps")
    for eps, color in ((1.0, "tab:blue"), (0.5, "tab:red")):
        ax1.plot(x, prime_bump_potential(x, eps), color=color, label=f"eps = {eps}")
    ax1.set_title("the schedule's ends, eps = 1 -> 0.5: the bumps merge")
    table = positional_prime_bump(128, 0.5)
    t = torch.arange(128)
    ax2.plot(t, table, color="tab:red", label="bias(t) = V_0.5(log(t + 1))")
    powers = (p.double() ** k.double()).round().long()
    prime_t = (powers[k == 1] - 1)
    power_t = (powers[k > 1] - 1)
    prime_t, power_t = prime_t[prime_t < 128], power_t[power_t < 128]
    ax2.plot(prime_t, table[prime_t], "k.", ms=6, label="t + 1 prime")
    ax2.plot(power_t, table[power_t], "o", color="tab:orange", ms=5, mfc="none", label="t + 1 = p^k, k >= 2")
    ax2.set(xlabel="token position t", ylabel="positional potential", title="the model's bias by token position")
    for ax in (ax0, ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "prime_bump_potential.png", dpi=110)
    plt.close(fig)
    return {"bias_t0": float(table[0]), "bias_t1": float(table[1]), "bias_t10": float(table[10]),
            "bias_t127": float(table[127])}


def train_model(args, tokenizer, train, valid, fig_dir: Path):
    set_seed(0)
    config = ResNetBKConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, **MODEL)
    model = ResNetBKForCausalLM(config)
    monitor = SpectralMonitorCallback(torch.tensor(valid[:2]["input_ids"]), every_n_steps=25,
                                      tensorboard_dir=args.tensorboard_dir, png_path=fig_dir / "stability_dashboard.png")
    targs = TrainingArguments(output_dir=str(Path(args.model_dir) / "checkpoints"), max_steps=args.steps,
                              per_device_train_batch_size=16, learning_rate=3e-3, lr_scheduler_type="cosine",
                              warmup_steps=15, weight_decay=0.1, max_grad_norm=1.0, logging_steps=25,
                              save_strategy="no", report_to="none", use_cpu=True, seed=0, data_seed=0,
                              dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=valid,
                      data_collator=default_data_collator, callbacks=[monitor])
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    eval_loss = trainer.evaluate()["eval_loss"]
    model.save_pretrained(args.model_dir)
    tokenizer.save_pretrained(args.model_dir)
    return model, {"train_seconds": seconds, "eval_loss": eval_loss, "steps": args.steps,
                   "monitor_first": monitor.history[0], "monitor_last": monitor.history[-1]}


def figure_spacings(model, valid, out: Path) -> dict:
    ids = torch.tensor(valid[:16]["input_ids"])
    spectra_by_layer, results = {}, {}
    for layer in model_hamiltonians(model.eval(), ids):
        E = torch.linalg.eigvalsh(dense_hamiltonian(layer.a, layer.hop))        # (B, H, N)
        spectra_by_layer[layer.layer] = E.reshape(-1, E.shape[-1])
    pooled_s, pooled_r = [], []
    for layer, spectra in spectra_by_layer.items():
        s = torch.cat([nearest_neighbor_spacings(e) for e in spectra])
        r = torch.cat([spacing_ratios(e) for e in spectra])
        results[f"layer{layer}"] = spacing_fit(s, r)
        pooled_s.append(s)
        pooled_r.append(r)
    s_all, r_all = torch.cat(pooled_s), torch.cat(pooled_r)
    results["all_layers"] = spacing_fit(s_all, r_all)
    # references: GOE matrices and Poisson levels of the same size and count (seeded)
    gen = torch.Generator().manual_seed(0)
    n = spectra_by_layer[0].shape[-1]
    A = torch.randn(64, n, n, generator=gen, dtype=torch.float64)
    goe = torch.linalg.eigvalsh((A + A.mT) / 2)
    results["reference_goe"] = spacing_fit(torch.cat([nearest_neighbor_spacings(e) for e in goe]),
                                           torch.cat([spacing_ratios(e) for e in goe]))
    poisson = torch.rand(64, n, generator=gen, dtype=torch.float64).sort(-1).values
    results["reference_poisson"] = spacing_fit(torch.cat([nearest_neighbor_spacings(e) for e in poisson]),
                                               torch.cat([spacing_ratios(e) for e in poisson]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    grid = torch.linspace(0, 4, 400, dtype=torch.float64)
    for ax, (title, data, fit) in zip(axes, (
            ("trained model: H = H0 + diag(v) per layer and head", s_all, results["all_layers"]),
            ("references: GOE matrices (blue), Poisson levels (grey)", None, None))):
        if data is not None:
            ax.hist(data.numpy(), bins=80, range=(0, 4), density=True, alpha=0.5, color="tab:green",
                    label=f"model, {fit['num_spacings']} spacings")
        else:
            ax.hist(torch.cat([nearest_neighbor_spacings(e) for e in goe]).numpy(), bins=60,
                    range=(0, 4), density=True, alpha=0.4, color="tab:blue", label="GOE samples")
            ax.hist(torch.cat([nearest_neighbor_spacings(e) for e in poisson]).numpy(), bins=60,
                    range=(0, 4), density=True, alpha=0.3, color="grey", label="Poisson samples")
        ax.plot(grid, poisson_spacing(grid), "k-", label="Poisson e^-s")
        ax.plot(grid, wigner_surmise(grid, 1), "b--", label="GOE surmise")
        ax.plot(grid, wigner_surmise(grid, 2), "m:", label="GUE surmise")
        if fit is not None:
            title += (f"\nKS: Poisson {fit['ks_poisson']:.3f}, GOE {fit['ks_goe']:.3f}, GUE {fit['ks_gue']:.3f}; "
                      f"<r> = {fit['mean_ratio']:.3f}")
        ax.set(xlabel="unfolded spacing s", ylabel="density", title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "spacing_statistics.png", dpi=110)
    plt.close(fig)
    return results


def figure_scattering(model, tokenizer, valid, out: Path) -> dict:
    ids = torch.tensor(valid[:1]["input_ids"])[:, :40]
    layers = model_hamiltonians(model.eval(), ids)
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    fig = plt.figure(figsize=(14, 8))
    info = {}
    for col, layer in enumerate((layers[0], layers[-1])):
        ax = fig.add_subplot(2, 2, col + 1)
        head = 0
        v, hop = layer.v[0, head], layer.hop[0, head]
        for k, z in enumerate(layer.z[head].tolist()):
            phases = token_phases(v, hop, z, layer.h0_diag)
            ax.plot(phases, marker=".", label=f"z_{k} = {z.real:.2f}{z.imag:+.2f}i")
            info[f"layer{layer.layer}_head{head}_shift{k}"] = {"z": [z.real, z.imag],
                                                               "phase_sum": float(phases.sum()),
                                                               "max_abs_phase": float(phases.abs().max())}
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels([t.replace("\n", "\\n") for t in tokens], rotation=90, fontsize=6)
        ax.set(ylabel="phi_t(z) = arg g0_t - arg g_t  (rad)",
               title=f"per-token scattering phase, layer {layer.layer}, head {head}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax = fig.add_subplot(2, 2, col + 3)
        lambdas = torch.linspace(-8, 4, 1200, dtype=torch.float64)
        eta = float(layer.z[head].imag.min())
        ax.plot(lambdas, scattering_phase(v, hop, lambdas, eta, layer.h0_diag), label="delta = arg det2(I + K)")
        ax.plot(lambdas, math.pi * spectral_shift(v, hop, lambdas, eta, layer.h0_diag), label="pi xi (spectral shift)")
        for z in layer.z[head].tolist():
            ax.axvline(z.real, color="grey", lw=0.8, ls=":")
        ax.set(xlabel=f"lambda  (eta = {eta:.3f}; dotted: Re z_k)", ylabel="rad",
               title=f"whole sequence ({len(tokens)} tokens), layer {layer.layer}, head {head}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scattering_phase.png", dpi=110)
    plt.close(fig)
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="use this saved model instead of training one")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model-dir", default="outputs/theory-demo-model")
    p.add_argument("--tensorboard-dir", default="runs/theory-demo")
    p.add_argument("--figures", default="docs/figures")
    p.add_argument("--results", default="docs/data/theory_figures.json")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    fig_dir = Path(args.figures)
    fig_dir.mkdir(parents=True, exist_ok=True)
    results = {"potential": figure_potential(fig_dir)}
    tokenizer = load_tokenizer()
    corpus = load_demo_corpus()
    valid = tokenize_and_chunk(corpus["validation"], tokenizer, MODEL["positional_potential_length"])
    if args.model:
        model = ResNetBKForCausalLM.from_pretrained(args.model)
        results["model"] = {"loaded_from": args.model}
    else:
        train = tokenize_and_chunk(corpus["train"], tokenizer, MODEL["positional_potential_length"])
        model, results["model"] = train_model(args, tokenizer, train, valid, fig_dir)
    results["spacings"] = figure_spacings(model, valid, fig_dir)
    results["scattering"] = figure_scattering(model, tokenizer, valid, fig_dir)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({k: results[k] for k in ("potential", "spacings")}, indent=1, default=str))
    print(f"model: {results['model']}")
    print(f"wrote {fig_dir}/*.png and {args.results}")


if __name__ == "__main__":
    main()
