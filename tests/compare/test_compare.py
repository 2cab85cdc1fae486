"""`resnet-bk compare`, its evaluation pieces, fairness checks, and the lm-eval task definitions (CPU, tiny)."""
import copy
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from resnet_bk_hf.compare.architectures import (build_model, count_parameters,
                                                forward_flops_per_token, matmul_weight_count, size_model)
from resnet_bk_hf.compare.evaluation import MambaStreamer, evaluate_blocks, streaming_nll
from resnet_bk_hf.compare.fairness import FairnessError, check_comparable
from resnet_bk_hf.tokenization import load_tokenizer

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]


def write_synthetic_bench_corpora(root: Path) -> Path:
    """A few KB in the layout and formats of the bench corpora (shared/data/README.md), cut from the shipped
    CC0 demo corpus, so that the compare and lm-eval paths run on a clean clone (CI has no ../shared/data)."""
    demo = [json.loads(line)["text"] for line in (ROOT / "resnet_bk_hf/data/sotu_demo.jsonl").open(encoding="utf-8")]
    (root / "sotu").mkdir(parents=True)
    (root / "brown").mkdir()
    (root / "wikitext-2").mkdir()
    with (root / "sotu/train.jsonl").open("w", encoding="utf-8") as f:   # three, so max_train_docs=2 trims
        for i, text in enumerate(demo[:3]):
            f.write(json.dumps({"year": 1900 + i, "president": "P", "party": "n", "text": text[:3000]}) + "\n")
    with (root / "brown/brown.jsonl").open("w", encoding="utf-8") as f:
        for i, text in enumerate(demo[3:6]):
            f.write(json.dumps({"id": f"ca{i:02d}", "genre": "a", "text": text[:2000]}) + "\n")
    with (root / "sotu/valid.jsonl").open("w", encoding="utf-8") as f:
        for i, text in enumerate(demo[6:8]):
            f.write(json.dumps({"year": 2000 + i, "president": "Q", "party": "r", "text": text[:2500]}) + "\n")
    # WikiText-2's raw form: " = Title = " heading lines, space-separated punctuation, blank lines around
    articles = [f" \n = Article {k} = \n \n {demo[8 + k][:1500].replace(',', ' ,').replace('.', ' .')} \n"
                for k in range(2)]
    (root / "wikitext-2/valid.txt").write_text("".join(articles), encoding="utf-8")
    (root / "moby-dick.txt").write_text("CHAPTER 1. Loomings.\n\n" + demo[10][:3000], encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def synthetic_data_dir(tmp_path_factory):
    return write_synthetic_bench_corpora(tmp_path_factory.mktemp("synthetic_bench_data"))


@pytest.fixture(scope="module", params=["synthetic", "bench"])
def bench_data_dir(request, synthetic_data_dir):
    """The synthetic corpora always; the real bench corpora as well where they exist (else that case skips)."""
    if request.param == "bench":
        if not (SHARED_DATA / "wikitext-2" / "valid.txt").is_file():
            pytest.skip(f"the bench corpora (sotu, WikiText-2 and Brown text files; ../shared/data beside a checkout of "
                        f"this project, described in its README) are not in {SHARED_DATA}: set RESNET_BK_SHARED_DATA "
                        "to a folder holding them to run this case too; the synthetic-corpus case ran the same checks")
        return SHARED_DATA
    return synthetic_data_dir


def _all_finite(obj, path="summary"):
    """Every number in a JSON-like object is finite (None allowed); returns the count of numbers seen."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return 0
    if isinstance(obj, (int, float)):
        assert math.isfinite(obj), f"{path} = {obj}"
        return 1
    if isinstance(obj, dict):
        return sum(_all_finite(v, f"{path}.{k}") for k, v in obj.items())
    return sum(_all_finite(v, f"{path}[{i}]") for i, v in enumerate(obj))


@pytest.mark.parametrize("arch,family", [("resnet_bk", "llama"), ("mamba", "llama"), ("mamba2", "llama"),
                                         ("transformer", "llama"), ("transformer", "gpt2")])
def test_sizing_hits_the_target_and_flops_count_every_weight(arch, family):
    target = 60_000
    spec = size_model(arch, target, 2, vocab_size=500, width_multiple=16 if arch != "mamba" else 4, head_dim=16,
                      num_shifts=2, state_size=4, mamba2_head_dim=16, mamba2_state_size=8, mamba2_chunk_size=16,
                      transformer_family=family)
    model = build_model(spec, 500, 0, 1)
    counts = count_parameters(model)
    assert abs(counts["non_embedding"] - target) / target < 0.12, counts
    # the knob the sizing tunes last is at its best value: one multiple up or down is no closer to the target
    multiple = 16 if arch != "mamba" else 4
    knob, step = ("intermediate_size", 32) if arch in ("resnet_bk", "transformer") else ("hidden_size", multiple)
    error = abs(counts["non_embedding"] - target)
    for delta in (-step, step):
        neighbour = dataclasses.replace(spec, **{knob: getattr(spec, knob) + delta})
        if getattr(neighbour, knob) >= step:
            n = count_parameters(build_model(neighbour, 500, 0, 1))["non_embedding"]
            assert error <= abs(n - target), (knob, getattr(spec, knob), delta, counts["non_embedding"], n)
    assert counts["total"] - counts["non_embedding"] >= 500 * spec.hidden_size  # the (tied) embedding is left out
    flops = forward_flops_per_token(model.config, arch, seq_len=64)
    # the analytic matmul term is exactly 2 FLOPs per weight of every projection in the built model
    assert flops["matmul"] == 2 * matmul_weight_count(model)
    assert flops["lm_head"] == 2 * spec.hidden_size * 500 and flops["train"] == 3 * flops["forward"]
    assert flops["mixer"] > 0


def test_config_errors_name_the_field(tmp_path):
    from resnet_bk_hf.compare.config import load_config, parse_config
    import yaml
    base = yaml.safe_load((ROOT / "examples/compare/tiny_cpu.yaml").read_text())
    parse_config(copy.deepcopy(base))
    for mutate, field in [(lambda d: d["train"].update(tokens=3), "train.tokens"),
                          (lambda d: d.update(architectures=["resnet_bk", "rwkv"]), "architectures"),
                          (lambda d: d.update(seeds=[0, 0]), "seeds"),
                          (lambda d: d["train"].update(learning_rate=-1), "train.learning_rate"),
                          (lambda d: d["sizes"]["tiny"]["layers"].pop("mamba"), "sizes.tiny.layers.mamba"),
                          (lambda d: d["train"].update(bogus=1), "train: unknown key(s) ['bogus']"),
                          (lambda d: d.update(long_context={"seq_lens": [48], "tokens_per_step": 64, "tokens": 64}),
                           "long_context.tokens_per_step"),
                          (lambda d: d["train"].update(micro_batch_size={"mamba": 3}), "train.micro_batch_size.mamba"),
                          (lambda d: d["sizes"]["tiny"].update(model_overrides={"rwkv": {}}),
                           "sizes.tiny.model_overrides"),
                          (lambda d: d["sizes"]["tiny"].update(model_overrides={"mamba": [1]}),
                           "sizes.tiny.model_overrides.mamba"),
                          (lambda d: d["train"].update(micro_batch_size={"rwkv": 2}), "train.micro_batch_size"),
                          (lambda d: d["train"].update(micro_batch_size=0), "train.micro_batch_size"),
                          (lambda d: d.update(long_context={"seq_lens": [32], "tokens_per_step": 64, "tokens": 64,
                                                            "gradient_checkpointing": "yes"}),
                           "long_context.gradient_checkpointing")]:
        data = copy.deepcopy(base)
        mutate(data)
        with pytest.raises(ValueError, match=re.escape(field)):
            parse_config(data)
    with pytest.raises(ValueError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    data = copy.deepcopy(base)
    data["train"]["micro_batch_size"] = {"mamba": 2}
    train = parse_config(data).train
    assert (train.micro_batch_for("mamba"), train.micro_batch_for("resnet_bk")) == (2, train.batch_size)


def test_run_selection_splits_pending_runs_without_overlap():
    from resnet_bk_hf.compare.runner import RunSelection
    pending = [(size, seed, arch) for size in "ab" for seed in (0, 1, 2) for arch in ("x", "y")]
    shards = [RunSelection(shard=(i, 3)).pick(pending) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(pending) and all(len(s) == 4 for s in shards)
    assert RunSelection(seed=1).pick(pending, seed_of=lambda r: r[1]) == [r for r in pending if r[1] == 1]
    for bad in [dict(shard=(2, 2)), dict(shard=(0, 0)), dict(gpu_shared_by=0)]:
        with pytest.raises(ValueError):
            RunSelection(**bad)


@pytest.mark.parametrize("use_mambapy", [False, True])
def test_mamba_streamer_carries_state_exactly(use_mambapy):
    from transformers import MambaConfig, MambaForCausalLM
    if use_mambapy:
        pytest.importorskip("mambapy")
    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, state_size=8,
                                         use_mambapy=use_mambapy)).eval()
    with torch.no_grad():  # slow decay, so that the state carried across chunks matters
        for layer in model.backbone.layers:
            layer.mixer.A_log.mul_(0.01)
    x = torch.randint(0, 50, (2, 40))
    with torch.no_grad():
        full = model(x, use_cache=False).logits
        streamer = MambaStreamer(model)
        chunked = torch.cat([streamer(x[:, i:i + 7]) for i in range(0, 40, 7)], dim=1)
        # dropping the state at chunk boundaries changes the logits: the test can tell
        restarted = torch.cat([MambaStreamer(model)(x[:, i:i + 7]) for i in range(0, 40, 7)], dim=1)
    assert (chunked - full).abs().max() < 1e-4
    assert (restarted - full).abs().max() > 1e-3


def test_streaming_nll_equals_full_sequence_nll():
    from conftest import tiny_config
    from resnet_bk_hf import ResNetBKForCausalLM
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    ids = torch.randint(2, 97, (61,))
    bk = ResNetBKForCausalLM(tiny_config()).eval()
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=64,
                                         max_position_embeddings=128)).eval()
    for arch, model in (("resnet_bk", bk), ("transformer", llama)):
        with torch.no_grad():
            ref = F.cross_entropy(model(input_ids=ids[None], use_cache=False).logits[0, :-1], ids[1:], reduction="none")
        # state carried in chunks of 8 (the Transformer: a window that covers everything before)
        nll = streaming_nll(model, arch, ids.tolist(), chunk=8, device="cpu", window=64)
        assert nll.shape == (60,) and torch.allclose(nll, ref, atol=1e-4), arch
    # a sliding window shorter than the context changes the Transformer's answer, and stays finite
    short = streaming_nll(llama, "transformer", ids.tolist(), chunk=4, device="cpu", window=8)
    assert torch.isfinite(short).all() and not torch.allclose(short, ref, atol=1e-4)


def test_block_evaluation_scores_every_token_once_and_counts_bytes():
    from conftest import tiny_config
    from resnet_bk_hf import ResNetBKForCausalLM
    torch.manual_seed(0)
    model = ResNetBKForCausalLM(tiny_config()).eval()
    stream = torch.randint(2, 97, (50,)).tolist()
    byte_lengths = [0, 0] + [1 + i % 3 for i in range(95)]
    res = evaluate_blocks(model, stream, byte_lengths, block_size=16, batch_size=3, device="cpu")
    assert res["tokens"] == 49 and res["bytes"] == sum(byte_lengths[t] for t in stream[1:])
    nll = 0.0
    with torch.no_grad():  # windows of 17 tokens overlapping by one: block k predicts stream[16k+1 : 16k+17]
        for s in range(0, 49, 16):
            n = min(16, 49 - s)
            logits = model(input_ids=torch.tensor([stream[s:s + n]]), use_cache=False).logits[0]
            nll += F.cross_entropy(logits, torch.tensor(stream[s + 1:s + 1 + n]), reduction="sum").item()
    assert res["nll_sum"] == pytest.approx(nll, rel=1e-5)
    assert res["bits_per_byte"] == pytest.approx(nll / math.log(2) / res["bytes"])
    assert res["perplexity"] == pytest.approx(math.exp(nll / 49))


def test_byte_lengths_of_the_shipped_tokenizer_are_exact():
    from resnet_bk_hf.compare.data import token_byte_lengths
    tok = load_tokenizer()
    lengths = token_byte_lengths(tok)
    text = "Fellow-citizens — naïve café, 1,234 ¶ \n\t 中文 emoji 🙂"
    assert sum(lengths[i] for i in tok(text).input_ids) == len(text.encode("utf-8"))
    assert lengths[tok.eos_token_id] == 0


def test_describe_gives_the_t_interval_of_hand_computed_numbers():
    pytest.importorskip("scipy")   # the compare extra; the transformers-4.57 venv has no scipy
    from resnet_bk_hf.compare.stats import describe
    d = describe([1.0, 2.0, 3.0, math.nan])            # the diverged (NaN) run is left out of the statistics
    # with 2 degrees of freedom the t quantile has a closed form: t_p = (2p - 1) sqrt(2 / (4 p (1 - p)))
    t975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))   # = 4.3027
    half = t975 * 1.0 / math.sqrt(3)                   # std = 1, n = 3
    assert d["n"] == 3 and d["mean"] == 2.0 and d["std"] == pytest.approx(1.0)
    assert d["ci95_t"] == pytest.approx([2 - half, 2 + half], abs=1e-9)
    assert d["ci95_t"] == pytest.approx([-0.484138, 4.484138], abs=1e-6)
    assert describe([5.0])["ci95_t"] is None and describe([])["mean"] is None
    # a value not measured (None: a run resumed from its final checkpoint has no throughput) is left out too
    d = describe([1.0, None, 2.0, 3.0])
    assert d["n"] == 3 and d["mean"] == 2.0 and d["values"] == [1.0, None, 2.0, 3.0]
    assert d["ci95_t"] == pytest.approx([2 - half, 2 + half], abs=1e-9)


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    from resnet_bk_hf.compare.stats import bootstrap_ci
    values = [0.3, 1.1, 0.7, 2.0, 1.4]
    lo, hi = bootstrap_ci(values, seed=0)
    assert min(values) <= lo < sum(values) / len(values) < hi <= max(values)
    assert bootstrap_ci(values, seed=0) == [lo, hi]          # same seed, same interval
    assert bootstrap_ci(values, seed=1) != [lo, hi]          # the seed is used
    lo90, hi90 = bootstrap_ci(values, level=0.90, seed=0)    # a lower level gives a narrower interval
    assert lo <= lo90 and hi90 <= hi and (lo, hi) != (lo90, hi90)
    assert bootstrap_ci([1.0]) is None


def test_paired_test_sign_and_value_match_scipy_and_the_closed_form():
    stats = pytest.importorskip("scipy.stats")
    from resnet_bk_hf.compare.stats import paired_test
    a, b = {0: 3.0, 1: 5.0, 2: 4.0, 3: math.nan}, {0: 1.0, 1: 2.0, 2: 3.0, 4: 1.0}
    res = paired_test(a, b)                   # a - b over seeds 0..2: differences 2, 3, 1
    assert res["seeds"] == [0, 1, 2] and res["dropped_seeds"] == [3, 4] and res["differences"] == [2.0, 3.0, 1.0]
    assert res["mean_difference"] == 2.0
    t = 2.0 / (1.0 / math.sqrt(3))            # mean / (std / sqrt(n)) = 2 sqrt(3) > 0: a is larger
    assert res["t_statistic"] == pytest.approx(t)
    # two-sided p with 2 degrees of freedom: 1 - t / sqrt(2 + t^2)
    assert res["t_pvalue"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    ref = stats.ttest_rel([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert res["t_statistic"] == pytest.approx(ref.statistic) and res["t_pvalue"] == pytest.approx(ref.pvalue)
    flipped = paired_test(b, a)
    assert flipped["mean_difference"] == -2.0 and flipped["t_statistic"] == pytest.approx(-t)
    lo, hi = res["ci95_bootstrap_difference"]
    assert 1.0 <= lo < 2.0 < hi <= 3.0
    # exactly constant differences: infinite t, p = 0; merely close ones go through the real test
    const = paired_test({0: 3.0, 1: 4.0}, {0: 1.0, 1: 2.0})
    assert const["t_statistic"] == math.inf and const["t_pvalue"] == 0.0
    close = paired_test({0: 2.0, 1: 2.000001, 2: 2.0000005}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert 0.0 < close["t_pvalue"] == pytest.approx(stats.ttest_rel([2.0, 2.000001, 2.0000005], [0.0] * 3).pvalue)
    assert paired_test({0: 1.0}, {0: 2.0})["t_pvalue"] is None


def test_count_spikes_on_a_hand_made_loss_list():
    from resnet_bk_hf.compare.stats import count_spikes
    assert count_spikes([1.0, 3.0, 1.0, math.nan]) == 2        # 1 -> 3 is a spike; NaN counts
    assert count_spikes([4.0, 3.0, 5.9, 2.0, 4.0]) == 0        # never more than 2x the previous value
    assert count_spikes([1.0, 2.5, 6.0, math.inf, 1.0]) == 3   # 2.5 > 2, 6 > 5, inf; nothing after inf
    assert count_spikes([1.0, 1.5, 2.0], factor=1.2) == 2
    assert count_spikes([]) == 0 and count_spikes([7.0]) == 0


def test_position_profile_covers_every_token_once_with_its_slice_mean():
    from resnet_bk_hf.compare.evaluation import LN2, position_profile
    T = 37
    nll = torch.arange(1, T + 1, dtype=torch.float32) / 10       # token t (1-based) has NLL t / 10
    target_ids = [t % 5 for t in range(T)]
    byte_lengths = [1, 2, 3, 4, 5]
    prof = position_profile(nll, byte_lengths, target_ids, bins=6)
    assert sum(prof["tokens"]) == T and prof["start"][0] == 1 and prof["end"][-1] == T
    for k, (lo, hi, n) in enumerate(zip(prof["start"], prof["end"], prof["tokens"])):
        assert n == hi - lo + 1 > 0                              # 1-based, inclusive bounds
        if k:
            assert lo == prof["end"][k - 1] + 1                  # contiguous, no token twice
        positions = range(lo, hi + 1)
        mean = sum(p / 10 for p in positions) / n
        assert prof["perplexity"][k] == pytest.approx(math.exp(mean), rel=1e-6)
        nbytes = sum(byte_lengths[target_ids[p - 1]] for p in positions)
        assert prof["bits_per_byte"][k] == pytest.approx(sum(p / 10 for p in positions) / LN2 / nbytes, rel=1e-6)
    assert len(prof["start"]) > 2                                # log-spaced: several bins


def test_config_rejects_non_finite_and_out_of_range_values(tmp_path):
    import yaml

    from resnet_bk_hf.compare.config import load_config, parse_config
    base = yaml.safe_load((ROOT / "examples/compare/tiny_cpu.yaml").read_text())
    for section, key, value in [("train", "learning_rate", math.nan), ("train", "learning_rate", math.inf),
                                ("train", "max_grad_norm", math.inf), ("train", "max_grad_norm", math.nan),
                                ("train", "adam_beta1", -0.1), ("train", "adam_beta2", 1.5),
                                ("train", "adam_beta2", math.nan), ("train", "weight_decay", -3),
                                ("train", "weight_decay", math.nan), ("train", "warmup_ratio", "lots"),
                                ("train", "warmup_ratio", math.nan), ("train", "warmup_ratio", 1.0),
                                ("train", "dataloader_workers", -1), ("train", "torch_compile", "yes"),
                                ("train", "learning_rate", True), ("long_context", "position_bins", 0),
                                (None, "param_tolerance", math.nan)]:
        data = copy.deepcopy(base)
        (data[section] if section else data)[key] = value
        field = f"{section}.{key}" if section else key
        with pytest.raises(ValueError, match=rf"{field.replace('.', chr(92) + '.')} must be .*got {value!r}"):
            parse_config(data)
    data = copy.deepcopy(base)
    data["sizes"]["tiny"]["mamba_state_size"] = 0
    with pytest.raises(ValueError, match=r"sizes\.tiny\.mamba_state_size must be .*got 0"):
        parse_config(data)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ValueError, match="top level"):
        load_config(empty)
    with pytest.raises(ValueError, match="top level"):
        parse_config(["not", "a", "mapping"])


def _fake_result(arch, seed, size="s", **fairness):
    fair = {"tokenizer_sha256": "t", "data_sha256": "d", "train_tokens_budget": 1000, "seeds": [0, 1],
            "recipe": {"lr": 1e-3}, "seed": seed} | fairness
    return {"arch": arch, "seed": seed, "size": size, "status": "ok", "fairness": fair,
            "parameters": {"non_embedding": 100, "total": 200}, "param_deviation": 0.0,
            "target_non_embedding_params": 100}


def test_fairness_refuses_mismatched_runs():
    runs = [_fake_result(a, s) for a in ("resnet_bk", "mamba") for s in (0, 1)]
    table = check_comparable(runs, param_tolerance=0.05)
    assert table["seed_set"] == [0, 1] and table["data_sha256"] == "d" and len(table["runs"]) == 4
    for field, value in [("tokenizer_sha256", "other"), ("data_sha256", "other"), ("train_tokens_budget", 999),
                         ("recipe", {"lr": 2e-3})]:
        bad = copy.deepcopy(runs)
        bad[3]["fairness"][field] = value
        with pytest.raises(FairnessError, match=f"differ in {field}"):
            check_comparable(bad)
    with pytest.raises(FairnessError, match="seed set"):
        check_comparable(runs[:3])                       # mamba has seed 0 only
    bad = copy.deepcopy(runs)
    bad[0]["param_deviation"] = 0.2
    with pytest.raises(FairnessError, match="from the target"):
        check_comparable(bad, param_tolerance=0.05)


def test_compare_end_to_end_tiny(tmp_path, bench_data_dir):
    """Three architectures x two seeds + long context on a tiny budget: well-formed, finite, resumable, fair."""
    pytest.importorskip("scipy")
    from resnet_bk_hf.compare.config import load_config
    from resnet_bk_hf.compare.runner import RunSelection, run_compare
    cfg = load_config(ROOT / "examples/compare/tiny_cpu.yaml", {"output_dir": str(tmp_path / "out"),
                                                                 "data_dir": str(bench_data_dir)})
    assert cfg.long_context is not None, "tiny_cpu.yaml should exercise the long-context path"
    cfg.long_context.seq_lens, cfg.long_context.tokens = [32], 64   # one length, one step: the code path
    cfg.long_context.gradient_checkpointing = True
    # as benchmarks/compare_gpu.py runs it: seed 0 alone, the rest in two shards "sharing the GPU", then aggregation
    first = run_compare(cfg, selection=RunSelection(seed=0, aggregate=False))
    assert "runs only" in first["status"] and not (tmp_path / "out" / "summary.json").exists()
    assert sorted(p.parent.parent.name for p in (tmp_path / "out/runs").glob("*/*/seed0/result.json")) == \
        ["mamba", "resnet_bk", "transformer"] and not list((tmp_path / "out/runs").glob("*/*/seed1"))
    for i in range(2):
        run_compare(cfg, selection=RunSelection(shard=(i, 2), gpu_shared_by=2, aggregate=False))
    summary = run_compare(cfg, aggregate_only=True)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["status"] == "ok" and _all_finite(saved) > 100
    entry = saved["sizes"]["tiny"]
    assert set(entry["architectures"]) == {"resnet_bk", "mamba", "transformer"}
    for a in entry["architectures"].values():
        assert a["ok"] == 2, a["statuses"]
        for vset in ("sotu_valid", "wikitext2_valid"):
            m = a["metrics"][f"{vset}.bits_per_byte"]
            assert m["n"] == 2 and 0 < m["mean"] < 20 and m["ci95_t"][0] <= m["mean"] <= m["ci95_t"][1]
        # throughput from the seed that had the "GPU" alone only; losses from both seeds
        assert a["metrics"]["train_tokens_per_second"]["mean"] > 0 and a["metrics"]["train_tokens_per_second"]["n"] == 1
        assert a["metrics"]["throughput_seeds"] == [0] and a["metrics"]["final_train_loss"]["n"] == 2
    assert entry["architectures"]["mamba"]["mamba_scan_path"] == ["torch-sequential-loop"]
    assert entry["architectures"]["transformer"]["attn_implementation"] == "sdpa"
    assert entry["architectures"]["resnet_bk"]["scan_backend"] == ["recurrent"]
    comp = entry["comparisons"]["mamba - resnet_bk"]["sotu_valid.bits_per_byte"]
    assert comp["n"] == 2 and comp["t_pvalue"] is not None
    fair = saved["fairness"]
    assert fair["seed_set"] == [0, 1] and len(fair["tokenizer_sha256"]) == 64 and len(fair["data_sha256"]) == 64
    assert fair["train_tokens_budget"] == 512 and fair["recipe"]["seq_len"] == 32
    for fig in saved["figures"]:                      # relative to summary.json's folder
        assert not Path(fig).is_absolute() and (tmp_path / "out" / fig).stat().st_size > 1000
    assert {Path(f).suffix for f in saved["figures"]} == {".png", ".svg"}
    run = json.loads((tmp_path / "out/runs/tiny/mamba/seed1/result.json").read_text())
    assert len(run["loss_curve"]) == 4 and run["train"]["tokens_seen"] == 512
    assert run["train"]["gpu_shared_by_processes"] == 2 and not run["train"]["gradient_checkpointing"]
    # the fault-tolerance setting of every run is in its result: no rollback, non-finite values only
    assert run["fault_tolerance"]["rollback"] is False and run["fault_tolerance"]["grad_spike_factor"] is None
    assert run["fault_tolerance"]["events"] == [] and run["fault_tolerance"]["rollbacks"] == 0
    assert entry["comparisons"]["mamba - resnet_bk"]["train_tokens_per_second"]["seeds"] == [0]
    assert (tmp_path / "out/runs/tiny/resnet_bk/seed0/model/model.safetensors").is_file()
    # long context: every architecture at both lengths, trained and streamed through moby-dick
    lc = {(r["arch"], r["seq_len"]): r for r in summary["long_context"]}
    assert set(lc) == {(a, 32) for a in ("resnet_bk", "mamba", "transformer")}
    for r in lc.values():
        assert r["status"] == "ok" and r["streaming"]["status"] == "ok" and r["streaming"]["tokens"] == 150
        assert all(math.isfinite(p) for p in r["streaming"]["profile"]["perplexity"])
    assert lc[("transformer", 32)]["streaming"]["window"] == 32
    lc_run = json.loads((tmp_path / "out/long_context/mamba/N32/result.json").read_text())
    # the long-context runs use the first seed, so the seed-0 invocation trained them
    assert lc_run["train"]["gradient_checkpointing"] and lc_run["train"]["gpu_shared_by_processes"] == 1
    # resumable: a second invocation trains nothing and leaves the finished runs alone
    mtime = (tmp_path / "out/runs/tiny/mamba/seed1/result.json").stat().st_mtime_ns
    run_compare(cfg)
    assert (tmp_path / "out/runs/tiny/mamba/seed1/result.json").stat().st_mtime_ns == mtime
    # a run from another budget is refused when put beside these
    other = tmp_path / "other/s9/mamba/seed0"
    other.mkdir(parents=True)
    run["fairness"]["train_tokens_budget"] = 1024
    run["size"] = "s9"
    (other / "result.json").write_text(json.dumps(run))
    with pytest.raises(FairnessError, match="train_tokens_budget"):
        run_compare(cfg, aggregate_only=True, extra_run_dirs=[str(tmp_path / "other")])


def test_lm_eval_task_readers_split_the_corpora_into_documents(bench_data_dir):
    """The lm-eval task datasets read each corpus where it lies, one document per address / article / novel."""
    from resnet_bk_hf.compare.lm_eval_tasks import utils
    with open(bench_data_dir / "sotu/valid.jsonl", encoding="utf-8") as f:
        addresses = [json.loads(line)["text"] for line in f if line.strip()]
    assert list(utils.sotu_valid(str(bench_data_dir))["validation"]["text"]) == addresses
    articles = utils.wikitext2_valid(str(bench_data_dir))["validation"]["text"]
    raw = (bench_data_dir / "wikitext-2/valid.txt").read_text(encoding="utf-8")
    heading = utils.WIKITEXT_ARTICLE
    assert len(articles) == len(heading.findall(raw)) >= 2
    assert all(heading.match(a) for a in articles) and "".join(articles) == raw[heading.search(raw).start():]
    assert utils.moby_dick(str(bench_data_dir), max_chars=500)["validation"]["text"] == \
        [(bench_data_dir / "moby-dick.txt").read_text(encoding="utf-8")[:500]]
    trimmed = utils.sotu_valid(str(bench_data_dir), max_docs=1, max_chars=100)["validation"]["text"]
    assert [len(t) for t in trimmed] == [100]


def test_lm_eval_tasks_load_and_score_tiny_models_offline(tmp_path, synthetic_data_dir):
    """The bench task YAMLs load; lm-eval's `hf` model scores a saved ResNet-BK and a saved Mamba; the
    ResNet-BK number equals this package's own evaluation of the same text (synthetic corpora: the
    scoring does not depend on which text; the readers are checked on the real corpora above)."""
    pytest.importorskip("lm_eval", reason="lm-eval is in the test extra: pip install -e '.[test]'")
    from lm_eval.tasks import TaskManager
    from transformers import MambaConfig, MambaForCausalLM
    from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM
    from resnet_bk_hf.compare.data import token_byte_lengths
    from resnet_bk_hf.compare.lm_eval_run import run_lm_eval
    from resnet_bk_hf.compare.lm_eval_tasks import TASK_DIR
    from resnet_bk_hf.compare.lm_eval_tasks.utils import sotu_valid

    tasks = TaskManager(include_path=str(TASK_DIR)).all_tasks
    assert {"bench_sotu_valid", "bench_wikitext2_valid", "bench_moby_dick"} <= set(tasks)
    tok = load_tokenizer()
    torch.manual_seed(0)
    models = {"resnet_bk": ResNetBKForCausalLM(ResNetBKConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                                              num_heads=2, num_shifts=2, intermediate_size=32)),
              "mamba": MambaForCausalLM(MambaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                                    state_size=4, pad_token_id=0, bos_token_id=1, eos_token_id=1))}
    dirs = []
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        dirs.append(str(tmp_path / name))
    meta = {"max_chars": 1500}
    rows = run_lm_eval(dirs, tasks="bench_sotu_valid", output_dir=str(tmp_path / "lm_eval"),
                       data_dir=str(synthetic_data_dir), device="cpu", batch_size=2, max_length=1024, limit=1,
                       metadata=meta)
    table = (tmp_path / "lm_eval" / "lm_eval.md").read_text()
    assert table.count("bench_sotu_valid") == 2
    text = sotu_valid(str(synthetic_data_dir), max_docs=1, max_chars=1500)["validation"]["text"][0]
    ids = [tok.eos_token_id] + tok(text).input_ids   # lm-eval's rolling windows start from EOS
    assert len(ids) <= 1024                            # one window: the same computation as ours
    ours = evaluate_blocks(models["resnet_bk"], ids, token_byte_lengths(tok), block_size=1024, batch_size=1,
                           device="cpu")
    for name in dirs:
        bpb = rows[name]["results"]["bench_sotu_valid"]["bits_per_byte,none"]
        assert math.isfinite(bpb) and bpb > 0
    theirs = rows[dirs[0]]["results"]["bench_sotu_valid"]["bits_per_byte,none"]
    assert theirs == pytest.approx(ours["bits_per_byte"], rel=1e-4)


def test_gpu_session_driver_runs_seed0_alone_then_shards_and_packs_the_results(tmp_path, synthetic_data_dir):
    """benchmarks/compare_gpu.py (the driver of the H100 comparison) on the CPU: seed 0 alone, the other seed in
    two shards marked as sharing the device, aggregation, one archive without weights or checkpoints."""
    pytest.importorskip("scipy")
    import importlib.util
    import os
    import subprocess
    import sys
    import tarfile
    import yaml
    config = yaml.safe_load((ROOT / "examples/compare/tiny_cpu.yaml").read_text())
    config.pop("long_context")
    config.update(architectures=["resnet_bk", "transformer"], data_dir=str(synthetic_data_dir))
    (tmp_path / "main.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    quant = ["--quant-eval", "int8"] if importlib.util.find_spec("optimum.quanto") else []
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/compare_gpu.py"), "--out", str(tmp_path / "out"),
                           "--work", str(tmp_path / "work"), "--main", str(tmp_path / "main.yaml"), "--name", "tiny",
                           "--deadline-s", "400", *quant], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with tarfile.open(tmp_path / "out/tiny.tar.gz") as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("tiny/summary.json"))
        shared = json.load(tar.extractfile("tiny/runs/tiny/transformer/seed1/result.json"))["train"]
    assert {f"tiny/runs/tiny/{a}/seed{s}/result.json" for a in ("resnet_bk", "transformer") for s in (0, 1)} <= names
    assert not any("/model/" in n or "checkpoint" in n for n in names)
    assert {"logs/tiny_seed0.log", "logs/tiny_shard0.log", "logs/tiny_shard1.log"} <= names
    assert shared["gpu_shared_by_processes"] == 2 + len(quant) // 2     # the quantization run shares it too
    if quant:
        assert "quant_eval_tiny/quant_eval.json" in names and "logs/quant_eval_tiny.log" in names
    metrics = summary["sizes"]["tiny"]["architectures"]["resnet_bk"]["metrics"]
    assert metrics["throughput_seeds"] == [0] and metrics["sotu_valid.bits_per_byte"]["n"] == 2


def test_gpu_session_driver_runs_long_context_alone(tmp_path, synthetic_data_dir):
    """compare_gpu.py with --long-context and no --main (the Mamba long-context rerun): the long-context runs in
    shards, their aggregation, one archive; no main runs are started."""
    pytest.importorskip("scipy")
    import os
    import subprocess
    import sys
    import tarfile
    import yaml
    config = yaml.safe_load((ROOT / "examples/compare/tiny_cpu.yaml").read_text())
    config.update(architectures=["resnet_bk"], data_dir=str(synthetic_data_dir), run_main=False, seeds=[0])
    config["long_context"].update(seq_lens=[16, 32], tokens=64)
    (tmp_path / "lc.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/compare_gpu.py"), "--out", str(tmp_path / "out"),
                           "--work", str(tmp_path / "work"), "--long-context", str(tmp_path / "lc.yaml"),
                           "--deadline-s", "300"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--seed" not in proc.stdout                         # no main run was started
    with tarfile.open(tmp_path / "out/lc.tar.gz") as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("lc/summary.json"))
    assert {"lc/long_context/resnet_bk/N16/result.json", "lc/long_context/resnet_bk/N32/result.json"} <= names
    assert {"logs/long_context_shard0.log", "logs/long_context_shard1.log"} <= names
    assert sorted(r["seq_len"] for r in summary["long_context"]) == [16, 32]


def test_a_run_stopped_during_evaluation_is_not_trained_again(tmp_path, synthetic_data_dir, monkeypatch):
    """A process killed after training but before result.json (here: in the streaming evaluation) leaves the
    final checkpoint; the next invocation loads it instead of taking another step, keeps the whole loss curve,
    and evaluates the same model as an uninterrupted run."""
    from resnet_bk_hf.compare import long_context
    from resnet_bk_hf.compare.config import load_config
    from resnet_bk_hf.compare.runner import run_compare
    from training_helpers import spy_on_build_trainer
    calls = spy_on_build_trainer(monkeypatch)

    def config(out):
        cfg = load_config(ROOT / "examples/compare/tiny_cpu.yaml", {"output_dir": str(out),
                                                                     "data_dir": str(synthetic_data_dir)})
        cfg.architectures, cfg.run_main, cfg.train.save_steps = ["resnet_bk"], False, 1
        cfg.long_context.seq_lens, cfg.long_context.tokens_per_step, cfg.long_context.tokens = [32], 64, 128
        return cfg

    stream = long_context.stream_moby_dick

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("stopped during the evaluation")

    monkeypatch.setattr(long_context, "stream_moby_dick", killed)
    with pytest.raises(KeyboardInterrupt):
        run_compare(config(tmp_path / "a"))
    run_dir = tmp_path / "a/long_context/resnet_bk/N32"
    assert not (run_dir / "result.json").exists() and (run_dir / "checkpoints/checkpoint-2").is_dir()
    # its Trainer came from the one builder, with compare's recipe translated into the training schema
    (run_cfg, trainer), = calls
    assert run_cfg.training["output_dir"] == str(run_dir / "checkpoints") and trainer.args.max_steps == 2
    assert run_cfg.data.block_size == 32 and not run_cfg.fault_tolerance.rollback
    monkeypatch.setattr(long_context, "stream_moby_dick", stream)
    run_compare(config(tmp_path / "a"))
    resumed = json.loads((run_dir / "result.json").read_text())
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["train"]["steps_this_session"] == 0
    assert resumed["train"]["tokens_seen"] == 128 and [c["step"] for c in resumed["loss_curve"]] == [1, 2]
    run_compare(config(tmp_path / "b"))   # the same run, never interrupted
    plain = json.loads((tmp_path / "b/long_context/resnet_bk/N32/result.json").read_text())
    assert [c["loss"] for c in resumed["loss_curve"]] == [c["loss"] for c in plain["loss_curve"]]
    assert resumed["streaming"]["bits_per_byte"] == pytest.approx(plain["streaming"]["bits_per_byte"], rel=1e-6)


def test_model_overrides_reach_the_built_model():
    """sizes.X.model_overrides sets fields of an architecture's transformers config (here mamba_ssm's init for
    Mamba: its initial loss drops from above uniform to near it); a field the sizing sets is refused."""
    import yaml
    from resnet_bk_hf.compare.config import parse_config
    from resnet_bk_hf.compare.runner import size_specs
    data = yaml.safe_load((ROOT / "examples/compare/tiny_cpu.yaml").read_text())
    data["sizes"]["tiny"]["model_overrides"] = {"mamba": {"initializer_range": 0.02, "rescale_prenorm_residual": True}}
    specs = size_specs(parse_config(copy.deepcopy(data)), 512, "cpu", 64)["tiny"]
    mamba = build_model(specs["mamba"], 512, 0, 1)
    assert mamba.config.initializer_range == 0.02 and mamba.config.rescale_prenorm_residual
    assert abs(mamba.get_input_embeddings().weight.std().item() - 0.02) < 0.002
    assert specs["resnet_bk"].extra == {} and specs["mamba"].extra["initializer_range"] == 0.02
    data["sizes"]["tiny"]["model_overrides"] = {"mamba": {"hidden_size": 8}}
    with pytest.raises(ValueError, match=r"sizes\.tiny\.model_overrides\.mamba"):
        size_specs(parse_config(data), 512, "cpu", 64)


@pytest.mark.parametrize("name", ["gpu_10m", "gpu_50m", "gpu_10m_mamba_ref_init", "gpu_50m_mamba_ref_init",
                                  "gpu_10m_mamba_ref_init_h200"])
def test_committed_gpu_summaries_follow_from_the_committed_run_files(name):
    """docs/results.md quotes summary.json; every run it lists must be committed beside it, and the
    statistics must come out of those files again (a summary without its runs cannot be checked)."""
    pytest.importorskip("scipy")
    from resnet_bk_hf.compare.report import _metric_table, load_results
    root = ROOT / "benchmarks" / "results" / "compare" / name
    summary = json.loads((root / "summary.json").read_text())
    listed = {(r["size"], r["arch"], r["seed"]) for r in summary["fairness"]["runs"]}
    results = load_results([root / "runs"])
    assert {(r["size"], r["arch"], r["seed"]) for r in results} == listed
    for size, block in summary["sizes"].items():
        for arch, entry in block["architectures"].items():
            table = _metric_table([r for r in results if r["size"] == size and r["arch"] == arch])
            for metric in ("sotu_valid.bits_per_byte", "wikitext2_valid.bits_per_byte", "final_train_loss",
                           "train_tokens_per_second_steady"):
                assert table[metric]["mean"] == pytest.approx(entry["metrics"][metric]["mean"], rel=1e-12), \
                    (size, arch, metric)


@pytest.mark.parametrize("name", ["gpu_long_context", "gpu_long_context_mamba_ref_init", "gpu_long_context_combined",
                                  "gpu_long_context_131k"])
def test_committed_long_context_summaries_follow_from_their_run_files(name):
    """Each long-context row of a committed summary is its run's result.json, and every row of the table in
    docs/results.md (combined folder) is one of those rows, rounded as printed."""
    root = ROOT / "benchmarks" / "results" / "compare" / name
    summary = json.loads((root / "summary.json").read_text())
    files = sorted((root / "long_context").glob("*/N*/result.json"))
    assert len(files) == len(summary["long_context"]) > 0
    for row in summary["long_context"]:
        run = json.loads((root / "long_context" / row["arch"] / f"N{row['seq_len']}" / "result.json").read_text())
        assert (run["final_train_loss"], run["loss_spikes"], run["max_grad_norm"]) == \
            (row["final_train_loss"], row["loss_spikes"], row["max_grad_norm"])
        assert run["streaming"]["bits_per_byte"] == row["streaming"]["bits_per_byte"]
    if name != "gpu_long_context_combined":
        return
    doc = (ROOT / "docs" / "results.md").read_text()
    for row in summary["long_context"]:
        label = "mamba (mamba_ssm init)" if row["arch"] == "mamba" else row["arch"]
        line = (f"| {label} | {row['seq_len']} | {row['status']} | {row['final_train_loss']:.3f} | "
                f"{row['loss_spikes']} | {row['max_grad_norm']:.2f} | {row['streaming']['bits_per_byte']:.3f} | "
                f"{row['streaming']['perplexity']:.0f} |")
        assert line in doc, line


def test_the_quantization_table_in_the_docs_is_the_committed_result():
    root = ROOT
    result = json.loads((root / "benchmarks/results/compare/quant_eval_gpu_10m_quant/quant_eval.json").read_text())
    doc = (root / "docs" / "results.md").read_text()
    labels = {"resnet_bk": "resnet_bk", "llama": "transformer", "mamba": "mamba (mamba_ssm init)"}
    assert result["widths"] == ["int8", "int4", "int2"] and len(result["models"]) == 3
    for entry in result["models"].values():
        cells = [f"{entry['none']['valid'][n]['bits_per_byte']:.4f}" for n in ("sotu_valid", "wikitext2_valid")]
        for width in result["widths"]:
            pair = ", ".join(f"{entry[width]['bits_per_byte_increase'][n]:+.4f}" for n in ("sotu_valid", "wikitext2_valid"))
            cells.append(f"**{pair}**" if width == "int2" and entry["model_type"] == "resnet_bk" else pair)
        line = f"| {labels[entry['model_type']]} | " + " | ".join(cells) + " |"
        assert line in doc, line


def test_the_lm_eval_against_package_table_in_the_docs_is_the_committed_result():
    """docs/results.md, lm-eval section: lm-eval's bits per byte of the saved seed-0 models (after the Mamba loading
    fix) beside the package's evaluation of the same models at the end of training."""
    root = ROOT / "benchmarks" / "results" / "compare"
    lm_eval = json.loads((root / "lm_eval_gpu_10m_quant" / "lm_eval.json").read_text())
    doc = (root.parents[2] / "docs" / "results.md").read_text()
    labels = {"resnet_bk": "resnet_bk", "transformer": "transformer", "mamba": "mamba (mamba_ssm init)"}
    for model_dir, scores in lm_eval.items():
        arch = Path(model_dir).parts[-3]
        run = json.loads((root / "gpu_10m_quant" / "runs" / "10m" / arch / "seed0" / "result.json").read_text())
        cells = []
        for task, valid in (("bench_sotu_valid", "sotu_valid"), ("bench_wikitext2_valid", "wikitext2_valid")):
            cells += [f"{scores['results'][task]['bits_per_byte,none']:.4f}",
                      f"{run['validation'][valid]['bits_per_byte']:.4f}"]
        line = f"| {labels[arch]} | " + " | ".join(cells) + " |"
        assert line in doc, line


def test_a_saved_mamba_with_mamba_ssm_init_loads_as_it_was_trained(tmp_path):
    """transformers' Mamba applies rescale_prenorm_residual (an init flag) to weights loaded by from_pretrained,
    dividing the output projections by sqrt(layers) again: the runner saves without the flag, and quant-eval and
    lm-eval load directories saved with it (earlier runs) with the flag cleared."""
    from transformers import MambaConfig, MambaForCausalLM
    from resnet_bk_hf.compare.quantization import _load
    from resnet_bk_hf.compare.architectures import init_only_overrides, save_trained_model
    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, state_size=4,
                                         initializer_range=0.02, rescale_prenorm_residual=True)).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "plain")      # as the runner saved before (transformers 5.24: out_proj / 2 on load)
    save_trained_model(model, tmp_path / "fixed")
    assert model.config.rescale_prenorm_residual                     # the live model's config is left as it was
    assert init_only_overrides(tmp_path / "plain") == {"rescale_prenorm_residual": False}   # lm-eval passes these
    assert init_only_overrides(tmp_path / "fixed") == {}
    for loaded in (MambaForCausalLM.from_pretrained(tmp_path / "fixed").state_dict(),
                   _load(str(tmp_path / "plain"), "cpu").state_dict()):
        for key, value in weights.items():
            assert torch.equal(loaded[key], value), key


def test_quant_eval_quantizes_every_linear_but_the_head_and_reports_the_loss_it_costs(tmp_path, synthetic_data_dir):
    """`resnet-bk quant-eval` (optimum-quanto, weight-only int8): the float row is the package's own evaluation,
    every Linear but the head becomes a quantized layer, the quality change is small but real, and the
    checkpoint on disk is left as it was."""
    pytest.importorskip("optimum.quanto", reason="optimum-quanto is in the compare and test extras")
    import hashlib
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MambaConfig, MambaForCausalLM
    from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM
    from resnet_bk_hf.compare.data import eval_token_stream, load_valid_texts, token_byte_lengths
    from resnet_bk_hf.compare.quantization import run_quant_eval
    tok = load_tokenizer()
    torch.manual_seed(0)
    V = len(tok)
    models = {"resnet_bk": ResNetBKForCausalLM(ResNetBKConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1,
                                                              num_heads=2, num_shifts=2, intermediate_size=64)),
              "mamba": MambaForCausalLM(MambaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, state_size=4,
                                                    pad_token_id=0, bos_token_id=1, eos_token_id=1)),
              "llama": LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    tie_word_embeddings=True))}
    dirs, digests = [], {}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        dirs.append(str(tmp_path / name))
        digests[name] = hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="int8"):
        run_quant_eval(dirs, str(tmp_path / "q"), widths=["int3"], data_dir=str(synthetic_data_dir), device="cpu")
    result = run_quant_eval(dirs, str(tmp_path / "q"), widths=["int8"], data_dir=str(synthetic_data_dir),
                            device="cpu", block_size=64, batch_size=4, max_tokens=300)
    assert (tmp_path / "q" / "quant_eval.md").read_text().count("| ") >= 3
    assert json.loads((tmp_path / "q" / "quant_eval.json").read_text()) == json.loads(json.dumps(result))
    stream = eval_token_stream(tok, load_valid_texts(synthetic_data_dir, "sotu_valid"), 300)
    for name, model in models.items():
        entry = result["models"][str(tmp_path / name)]
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        own = evaluate_blocks(reloaded, stream, token_byte_lengths(tok), 64, 4, "cpu")
        assert entry["none"]["valid"]["sotu_valid"]["bits_per_byte"] == pytest.approx(own["bits_per_byte"], rel=1e-6)
        linears = [n for n, m in reloaded.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
        assert entry["int8"]["quantized_linear_layers"] == len(linears) > 0, name
        increase = entry["int8"]["bits_per_byte_increase"]["sotu_valid"]
        assert 0 < abs(increase) < 0.05, (name, increase)
        assert hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest() == digests[name]


def test_example_compare_configs_load_and_translate_to_the_training_schema(tmp_path):
    """Every examples/compare/*.yaml passes the compare schema, and each run's recipe translates into a training
    config (training/schema.py) whose TrainingArguments build."""
    from resnet_bk_hf.compare.config import load_config, run_config
    from resnet_bk_hf.training import make_training_args
    files = sorted((ROOT / "examples/compare").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        cfg = load_config(path)
        for arch in cfg.architectures:
            run_cfg = run_config(cfg.train, cfg.fault_tolerance, arch=arch, run_dir=tmp_path / path.stem, device="cpu",
                                 bf16=False, seed=cfg.seeds[0])
            args = make_training_args(run_cfg)
            assert args.per_device_train_batch_size * args.gradient_accumulation_steps == cfg.train.batch_size
            assert args.max_steps == cfg.train.tokens // (cfg.train.batch_size * cfg.train.seq_len), path.name


def test_a_non_finite_loss_ends_a_compared_run_as_diverged_or_rolls_it_back(tmp_path, synthetic_data_dir, monkeypatch):
    """compare's fault handling comes from the same Trainer builder: by default (rollback off) a NaN ends the run
    with status "diverged", recorded, no evaluation; with fault_tolerance.rollback the run rolls back and finishes."""
    from transformers import TrainerCallback
    from resnet_bk_hf.compare.config import compare_fault_tolerance, load_config
    from resnet_bk_hf.compare.runner import RunSelection, run_compare
    from training_helpers import poison, spy_on_build_trainer

    class PoisonOnce(TrainerCallback):
        fired = False

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 1 and not PoisonOnce.fired:
                PoisonOnce.fired = True
                poison(model)

    spy_on_build_trainer(monkeypatch, add_callbacks=[PoisonOnce()])
    results = {}
    for rollback in (False, True):
        PoisonOnce.fired = False
        cfg = load_config(ROOT / "examples/compare/tiny_cpu.yaml", {"output_dir": str(tmp_path / str(rollback)),
                                                                     "data_dir": str(synthetic_data_dir)})
        cfg.architectures, cfg.seeds, cfg.long_context, cfg.save_models = ["resnet_bk"], [0], None, False
        cfg.fault_tolerance = compare_fault_tolerance({"rollback": rollback})
        run_compare(cfg, selection=RunSelection(aggregate=False))
        results[rollback] = json.loads((tmp_path / str(rollback) / "runs/tiny/resnet_bk/seed0/result.json").read_text())
    diverged, rolled_back = results[False], results[True]
    assert diverged["status"] == "diverged" and "validation" not in diverged and diverged["nonfinite_loss"]
    assert "logged loss is nan at step 2" in diverged["error"] and "rollback is false" in diverged["error"]
    assert [e["event"] for e in diverged["fault_tolerance"]["events"]] == ["stopped"]
    assert rolled_back["status"] == "ok" and rolled_back["fault_tolerance"]["rollback"] is True
    assert rolled_back["fault_tolerance"]["rollbacks"] == 1 and "validation" in rolled_back
    assert [e["event"] for e in rolled_back["fault_tolerance"]["events"]] == ["rollback"]
    assert len(rolled_back["loss_curve"]) == 4 and all(math.isfinite(c["loss"]) for c in rolled_back["loss_curve"])
