"""PEFT on ResNet-BK: LoRA and (IA)^3 through get_peft_model, trained with Trainer, merged and saved."""
import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

peft = pytest.importorskip("peft", reason="peft not installed (pip install -e '.[peft]')")

from resnet_bk_hf import ResNetBKForCausalLM  # noqa: E402
from resnet_bk_hf.peft_targets import IA3_FEEDFORWARD_MODULES, TARGET_MODULES  # noqa: E402

from conftest import tiny_config  # noqa: E402

METHODS = {
    "lora": lambda: peft.LoraConfig(task_type="CAUSAL_LM", target_modules=TARGET_MODULES, r=4, lora_alpha=8),
    "ia3": lambda: peft.IA3Config(task_type="CAUSAL_LM", target_modules=TARGET_MODULES,
                                  feedforward_modules=IA3_FEEDFORWARD_MODULES),
}
ADAPTER_MARK = {"lora": "lora_", "ia3": "ia3_"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_adapter_trains_alone_merges_and_saves(tmp_path, method):
    torch.manual_seed(0)
    base = ResNetBKForCausalLM(tiny_config())
    model = peft.get_peft_model(base, METHODS[method]())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(ADAPTER_MARK[method] in n for n in trainable)
    adapted_layers = {n.split(".")[-1] for n, m in model.named_modules()
                      if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)}
    assert adapted_layers == set(TARGET_MODULES)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(2, 97, (32, 16), generator=g)]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=6, per_device_train_batch_size=8,
                             learning_rate=5e-2, report_to="none", use_cpu=True, save_strategy="no",
                             disable_tqdm=True, logging_steps=100)
    Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator).train()
    for n, p in model.named_parameters():
        moved = not torch.equal(p.detach(), before[n])
        assert moved == (n in trainable), f"{n}: trainable={n in trainable}, changed={moved}"

    model.eval()
    ids = torch.randint(2, 97, (2, 21), generator=g)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged_model = model.merge_and_unload()
        merged = merged_model(input_ids=ids).logits
    assert isinstance(merged_model, ResNetBKForCausalLM)
    assert (merged - adapted).abs().max() <= 1e-5
    merged_model.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, merged)


def test_adapter_saves_and_reloads_on_a_fresh_base(tmp_path):
    torch.manual_seed(0)
    base = ResNetBKForCausalLM(tiny_config())
    base.save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(base, METHODS["lora"]())
    with torch.no_grad():   # stand-in for training: LoRA's B starts at zero
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.randint(2, 97, (2, 9))
    fresh = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                           tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(fresh.eval()(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
