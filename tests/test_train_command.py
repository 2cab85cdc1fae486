"""`resnet-bk train` end to end on tiny runs: the CPU example config with TensorBoard, gradient checkpointing,
streaming data, and the final saved model."""
import json

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from resnet_bk_hf.cli import main
from resnet_bk_hf.train import load_config, per_step_losses, run_training

from conftest import ROOT
from test_fault_tolerance import config_file


def test_cpu_example_config_trains_logs_to_tensorboard_and_saves_a_model(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tiny"
    code = main(["train", str(ROOT / "examples" / "cpu_tiny.yaml"), "--set", f"training.output_dir={out}",
                 "--set", "training.max_steps=4", "--set", "training.eval_steps=4", "--set", "training.save_steps=2",
                 "--set", "training.disable_tqdm=true"])
    assert code == 0
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 4 and summary["parameters"] > 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in entry for entry in log)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tok) and model.config.hidden_size == 64


def test_gradient_checkpointing_gives_the_same_losses(tmp_path):
    from transformers import TrainerCallback
    seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append(model.model.gradient_checkpointing)

    plain = run_training(load_config(config_file(tmp_path, name="plain", max_steps=4)))
    checkpointed = run_training(load_config(config_file(tmp_path, name="ckpt", max_steps=4,
                                                        gradient_checkpointing=True)), callbacks=[Probe()])
    assert seen == [True] * 4
    a, b = per_step_losses(plain.output_dir), per_step_losses(checkpointed.output_dir)
    assert sorted(a) == [1, 2, 3, 4] and max(abs(a[s] - b[s]) for s in a) < 1e-5


def test_streaming_corpus_trains(tmp_path):
    path = config_file(tmp_path, max_steps=4)
    raw = yaml.safe_load(path.read_text())
    raw["data"].update(streaming=True, shuffle_buffer=50)
    path.write_text(yaml.safe_dump(raw))
    result = run_training(load_config(path))
    assert result.exit_code == 0 and result.global_step == 4 and len(per_step_losses(result.output_dir)) == 4
