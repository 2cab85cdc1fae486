"""`resnet-bk train` end to end on tiny runs: the CPU example config with TensorBoard, gradient checkpointing,
streaming data, and the final saved model; the progress lines of runs without a terminal; `resnet-bk generate`'s
error for a model folder that does not exist."""
import json
from types import SimpleNamespace

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from resnet_bk_hf.cli import main
from resnet_bk_hf.training import load_config, per_step_losses, run_training

from conftest import ROOT
from training_helpers import config_file, spy_on_build_trainer


def test_cpu_example_config_trains_logs_to_tensorboard_and_saves_a_model(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    calls = spy_on_build_trainer(monkeypatch)
    out = tmp_path / "tiny"
    code = main(["train", str(ROOT / "examples" / "cpu_tiny.yaml"), "--set", f"training.output_dir={out}",
                 "--set", "training.max_steps=4", "--set", "training.eval_steps=4", "--set", "training.save_steps=2",
                 "--set", "training.disable_tqdm=true", "--set", "training.logging_steps=2"])
    assert code == 0
    assert len(calls) == 1 and calls[0][0].path.name == "cpu_tiny.yaml"     # the one Trainer builder
    printed = capsys.readouterr().out
    # what the run does before the first step, then one plain line per logging step, no redrawn bars
    assert "data: tokenizing 27 train documents into blocks of 128 tokens" in printed and "\r" not in printed
    assert "step 2/4 | loss " in printed and "step 4/4 | eval_loss " in printed and " tokens/s | " in printed
    assert printed.rstrip().endswith("no events (no recoveries)")          # events.jsonl is absent: none
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


def test_bars_become_plain_lines_when_stdout_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    """Trainer's tqdm bars redraw with carriage returns (and nest the evaluation bar inside the training bar):
    without a terminal build_trainer turns them off and prints one line per logging step instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from resnet_bk_hf import ResNetBKForCausalLM
    from resnet_bk_hf.training import PlainProgressCallback, build_trainer, parse_config
    from resnet_bk_hf.training import trainer as trainer_lib
    from conftest import tiny_config
    cfg = parse_config({"data": {"block_size": 16}, "training": {"output_dir": str(tmp_path), "use_cpu": True,
                                                                  "per_device_train_batch_size": 4}},
                       require_data=False)

    def kinds(trainer):
        return {type(c) for c in trainer.callback_handler.callbacks}

    piped = build_trainer(ResNetBKForCausalLM(tiny_config()), cfg)     # pytest's stdout is not a terminal
    assert piped.args.disable_tqdm and PlainProgressCallback in kinds(piped)
    assert not kinds(piped) & {ProgressCallback, PrinterCallback}
    monkeypatch.setattr(trainer_lib, "stdout_is_terminal", lambda: True)
    terminal = build_trainer(ResNetBKForCausalLM(tiny_config()), cfg)
    assert not terminal.args.disable_tqdm and ProgressCallback in kinds(terminal)
    assert PlainProgressCallback not in kinds(terminal)

    lines = PlainProgressCallback(tokens_per_step=4 * 16)
    args, state = SimpleNamespace(logging_steps=10), SimpleNamespace(is_world_process_zero=True, global_step=0,
                                                                     max_steps=300)
    lines.on_train_begin(args, state, None)
    state.global_step = 10
    lines.on_log(args, state, None, logs={"loss": 5.12341, "grad_norm": 1.5, "learning_rate": 1e-3, "epoch": 0.1})
    lines.on_log(args, state, None, logs={"eval_loss": 4.0, "eval_runtime": 1.0})
    lines.on_log(args, state, None, logs={"train_runtime": 75.0, "train_loss": 4.5})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "training 300 steps; a line every 10 steps"
    assert printed[1].startswith("step  10/300 | loss 5.1234 | lr 1.00e-03 | grad_norm 1.5 | ")
    assert printed[1].split(" | ")[4].endswith(" tokens/s")
    assert printed[2].startswith("step  10/300 | eval_loss 4.0000 (perplexity 54.60) | ")
    assert printed[3] == "done: step 10 after 1m15s (mean train loss 4.5000)"


def test_generate_says_no_such_directory_for_a_mistyped_model_path(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match=f"no such directory: {tmp_path / 'demo-modl'}$"):
        main(["generate", "--model", str(tmp_path / "demo-modl"), "--prompt", "Hello"])
    with pytest.raises(SystemExit, match="no such directory: ./outputs/demo-modl"):
        main(["generate", "--model", "./outputs/demo-modl", "--prompt", "Hello"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "demo-model").mkdir()
    # a relative path shaped like a Hub id (outputs/demo-modl) is a local typo when its folder exists here
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"no such directory: ./demo-modl \(in \.: demo-model\)$"):
        main(["generate", "--model", "./demo-modl", "--prompt", "Hello"])
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "demo-model").mkdir()
    with pytest.raises(SystemExit, match=r"no such directory: outputs/demo-modl \(in outputs: demo-model\)$"):
        main(["generate", "--model", "outputs/demo-modl", "--prompt", "Hello"])
    with pytest.raises(SystemExit, match="directory without config.json: not a saved model"):
        main(["generate", "--model", str(tmp_path / "empty"), "--prompt", "Hello"])
