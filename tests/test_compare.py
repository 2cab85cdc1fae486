"""`resnet-bk compare`, its evaluation pieces, fairness checks, and the lm-eval task definitions (CPU, tiny)."""
import copy
import json
import math
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

ROOT = Path(__file__).resolve().parents[1]
needs_data = pytest.mark.skipif(not (SHARED_DATA / "wikitext-2" / "valid.txt").is_file(),
                                reason=f"bench corpora not found in {SHARED_DATA} (set RESNET_BK_SHARED_DATA)")


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
                          (lambda d: d["train"].update(bogus=1), "train.bogus"),
                          (lambda d: d.update(long_context={"seq_lens": [48], "tokens_per_step": 64, "tokens": 64}),
                           "long_context.tokens_per_step")]:
        data = copy.deepcopy(base)
        mutate(data)
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            parse_config(data)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


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


@needs_data
def test_compare_end_to_end_tiny(tmp_path):
    """Three architectures x two seeds + long context on a tiny budget: well-formed, finite, resumable, fair."""
    pytest.importorskip("scipy")
    from resnet_bk_hf.compare.config import load_config
    from resnet_bk_hf.compare.runner import run_compare
    cfg = load_config(ROOT / "examples/compare/tiny_cpu.yaml", {"output_dir": str(tmp_path / "out"),
                                                                 "data_dir": str(SHARED_DATA)})
    assert cfg.long_context is not None, "tiny_cpu.yaml should exercise the long-context path"
    cfg.long_context.seq_lens, cfg.long_context.tokens = [32], 64   # one length, one step: the code path
    summary = run_compare(cfg)
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["status"] == "ok" and _all_finite(saved) > 100
    entry = saved["sizes"]["tiny"]
    assert set(entry["architectures"]) == {"resnet_bk", "mamba", "transformer"}
    for a in entry["architectures"].values():
        assert a["ok"] == 2, a["statuses"]
        for vset in ("sotu_valid", "wikitext2_valid"):
            m = a["metrics"][f"{vset}.bits_per_byte"]
            assert m["n"] == 2 and 0 < m["mean"] < 20 and m["ci95_t"][0] <= m["mean"] <= m["ci95_t"][1]
        assert a["metrics"]["train_tokens_per_second"]["mean"] > 0
    assert entry["architectures"]["mamba"]["mamba_scan_path"] == ["torch-sequential-loop"]
    assert entry["architectures"]["transformer"]["attn_implementation"] == "sdpa"
    assert entry["architectures"]["resnet_bk"]["scan_backend"] == ["recurrent"]
    comp = entry["comparisons"]["mamba - resnet_bk"]["sotu_valid.bits_per_byte"]
    assert comp["n"] == 2 and comp["t_pvalue"] is not None
    fair = saved["fairness"]
    assert fair["seed_set"] == [0, 1] and len(fair["tokenizer_sha256"]) == 64 and len(fair["data_sha256"]) == 64
    assert fair["train_tokens_budget"] == 512 and fair["recipe"]["seq_len"] == 32
    for fig in saved["figures"]:
        assert Path(fig).stat().st_size > 1000
    assert {Path(f).suffix for f in saved["figures"]} == {".png", ".svg"}
    run = json.loads((tmp_path / "out/runs/tiny/mamba/seed1/result.json").read_text())
    assert len(run["loss_curve"]) == 4 and run["train"]["tokens_seen"] == 512
    assert (tmp_path / "out/runs/tiny/resnet_bk/seed0/model/model.safetensors").is_file()
    # long context: every architecture at both lengths, trained and streamed through moby-dick
    lc = {(r["arch"], r["seq_len"]): r for r in summary["long_context"]}
    assert set(lc) == {(a, 32) for a in ("resnet_bk", "mamba", "transformer")}
    for r in lc.values():
        assert r["status"] == "ok" and r["streaming"]["status"] == "ok" and r["streaming"]["tokens"] == 150
        assert all(math.isfinite(p) for p in r["streaming"]["profile"]["perplexity"])
    assert lc[("transformer", 32)]["streaming"]["window"] == 32
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


@needs_data
def test_lm_eval_tasks_load_and_score_tiny_models_offline(tmp_path):
    """The bench task YAMLs load; lm-eval's `hf` model scores a saved ResNet-BK and a saved Mamba; the
    ResNet-BK number equals this package's own evaluation of the same text."""
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
                       data_dir=str(SHARED_DATA), device="cpu", batch_size=2, max_length=1024, limit=1, metadata=meta)
    table = (tmp_path / "lm_eval" / "lm_eval.md").read_text()
    assert table.count("bench_sotu_valid") == 2
    text = sotu_valid(str(SHARED_DATA), max_docs=1, max_chars=1500)["validation"]["text"][0]
    ids = [tok.eos_token_id] + tok(text).input_ids   # lm-eval's rolling windows start from EOS
    assert len(ids) <= 1024                            # one window: the same computation as ours
    ours = evaluate_blocks(models["resnet_bk"], ids, token_byte_lengths(tok), block_size=1024, batch_size=1,
                           device="cpu")
    for name in dirs:
        bpb = rows[name]["results"]["bench_sotu_valid"]["bits_per_byte,none"]
        assert math.isfinite(bpb) and bpb > 0
    theirs = rows[dirs[0]]["results"]["bench_sotu_valid"]["bits_per_byte,none"]
    assert theirs == pytest.approx(ours["bits_per_byte"], rel=1e-4)
