"""Runs that survive faults: NaN rollback, gradient spikes, loss divergence, out-of-memory, corrupt
checkpoints, SIGTERM, and SIGKILL + --resume with the same per-step losses as an uninterrupted run.

Every run trains a tiny model (2 layers, width 16) on the built-in corpus for a few dozen steps on the CPU.
"""
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from resnet_bk_hf.training import (TrainingFailedError, TrainingGuardCallback, load_config, per_step_losses,
                                   run_training, smaller_micro_batch)
from resnet_bk_hf.training.run import describe_events
from resnet_bk_hf.training.checkpoints import MANIFEST_NAME, latest_valid_checkpoint, verify_checkpoint, write_manifest

from conftest import ROOT

from training_helpers import config_file, poison


def events_of(output_dir):
    path = Path(output_dir) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def learning_rates(output_dir):
    rates = {}
    for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "learning_rate" in entry:
            rates[entry["step"]] = entry["learning_rate"]
    return rates


class Once(TrainerCallback):
    """Run `action(model)` at the end (or start) of one optimizer step, once per test."""

    def __init__(self, step, action, when="end"):
        self.step, self.action, self.when, self.fired = step, action, when, False

    def _maybe(self, state, model):
        if not self.fired and state.global_step == self.step:
            self.fired = True
            self.action(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.when == "end":
            self._maybe(state, model)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.when == "begin":
            self._maybe(state, model)


# ------------------------------------------------------------------ detectors (no training)

def test_guard_flags_nan_spikes_and_divergence():
    guard = TrainingGuardCallback(window=20, min_history=5, divergence_window=4, divergence_factor=2.0)
    for step in range(1, 11):
        assert guard.check_step(step, 4.0 + 0.01 * step, 1.0 + 0.1 * (step % 3)) is None
    assert guard.check_step(11, 4.0, 9.0) is None                  # 9x the median: allowed
    spike = guard.check_step(12, 4.0, 30.0)
    assert spike.kind == "grad_spike" and "running median" in spike.cause
    assert guard.check_step(13, float("nan"), 1.0).kind == "non_finite"
    assert guard.check_step(14, 4.0, float("inf")).kind == "non_finite"
    flagged = [guard.check_step(15 + i, loss, 1.0) for i, loss in enumerate([8.0, 9.0, 10.0, 11.0])]
    assert flagged[:3] == [None, None, None] and flagged[3].kind == "loss_divergence"


def test_guard_state_travels_in_checkpoint_files(tmp_path):
    guard = TrainingGuardCallback()
    guard.check_step(1, 3.0, 0.5)
    guard.lr_scale = 0.25
    (tmp_path / "trainer_state.json").write_text(json.dumps({"stateful_callbacks": {
        "TrainingGuardCallback": guard.state()}}))
    fresh = TrainingGuardCallback()
    assert fresh.restore(tmp_path) == 0.25 and fresh.grad_norms == [0.5] and fresh.losses == [3.0]


# ------------------------------------------------------------------ checkpoints

def test_manifest_detects_changed_truncated_missing_and_unfinished_files(tmp_path):
    def fresh(name):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(os.urandom(4096))
        (folder / "sub").mkdir()
        (folder / "sub" / "shard.pt").write_bytes(b"x" * 100)
        write_manifest(folder)
        return folder

    assert verify_checkpoint(fresh("ok")) == (True, "ok")
    folder = fresh("flipped")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[2000] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    ok, reason = verify_checkpoint(folder)
    assert not ok and "model.safetensors: sha256" in reason
    folder = fresh("truncated")
    (folder / "sub" / "shard.pt").write_bytes(b"x" * 10)
    assert "10 bytes, manifest says 100" in verify_checkpoint(folder)[1]
    folder = fresh("missing")
    (folder / "sub" / "shard.pt").unlink()
    assert "missing file sub/shard.pt" in verify_checkpoint(folder)[1]
    folder = fresh("unfinished")
    (folder / MANIFEST_NAME).unlink()
    assert "did not finish" in verify_checkpoint(folder)[1]


@pytest.mark.parametrize("manifest, reason", [
    ('{"files": {"a.bin": {"size": 1}}}', "entry 'a.bin' must have int 'bytes' and str 'sha256'"),
    ('{"files": {"a.bin": {"bytes": "1", "sha256": "00"}}}', "entry 'a.bin' must have int 'bytes'"),
    ('{"files": {"a.bin": null}}', "entry 'a.bin' must have"),
    ('{"files": ["a.bin"]}', "'files' must map file names to entries, got list"),
    ('{"files": "a.bin"}', "'files' must map file names to entries, got str"),
    ('{"files": {}}', "lists no files"),
    ('["files"]', "unreadable checksums.json: TypeError"),
    ('{"format": 1}', "unreadable checksums.json: KeyError"),
    ('{"files": {"a.bin": {"bytes": 1, "sha2', "unreadable checksums.json: JSONDecodeError"),   # torn write
    (b"\xff\xfe\x00", "unreadable checksums.json: UnicodeDecodeError"),
])
def test_malformed_manifest_fails_verification_and_is_quarantined(tmp_path, manifest, reason):
    folder = tmp_path / "out" / "checkpoint-2"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x")
    target = folder / MANIFEST_NAME
    target.write_bytes(manifest) if isinstance(manifest, bytes) else target.write_text(manifest)
    ok, why = verify_checkpoint(folder)
    assert not ok and reason in why
    reported = []
    assert latest_valid_checkpoint(tmp_path / "out", on_corrupt=lambda f, r: reported.append(f.name)) is None
    assert reported == ["corrupt-checkpoint-2"]


def test_per_step_losses_skip_a_torn_line(tmp_path, caplog):
    entries = [{"step": 1, "loss": 3.5}, {"step": 2, "loss": 3.25, "grad_norm": 1.0}, {"step": 2, "eval_loss": 3.0},
               {"step": 3, "loss": float("nan")}, {"step": 4, "loss": 3.0}]
    lines = [json.dumps(e) for e in entries]
    # a line torn by SIGKILL mid-write, then the resumed run appends after it on the same line
    torn = lines[-1][:9] + json.dumps({"step": 4, "loss": 2.75})
    (tmp_path / "train_log.jsonl").write_text("\n".join(lines[:-1] + [torn, '"just a string"', lines[-1][:12]]))
    with caplog.at_level("WARNING", logger="resnet_bk_hf.training.run"):
        assert per_step_losses(tmp_path) == {1: 3.5, 2: 3.25}
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3
    assert per_step_losses(tmp_path / "nothing") == {}
    # the log writer ends a torn last line before a resumed run appends, so the next entry stays readable
    from types import SimpleNamespace

    from resnet_bk_hf.training import JsonlLogCallback
    callback, args, state = JsonlLogCallback(), SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(
        is_world_process_zero=True, global_step=5)
    callback.on_train_begin(args, state, None)
    callback.on_log(args, state, None, logs={"loss": 2.5})
    callback.on_train_begin(args, state, None)   # a whole last line is left as it is
    assert per_step_losses(tmp_path) == {1: 3.5, 2: 3.25, 5: 2.5}
    assert (tmp_path / "train_log.jsonl").read_text().endswith('"loss": 2.5}\n')


class LogRecords(logging.Handler):
    """The messages of a logger (transformers' own loggers do not reach pytest's caplog)."""

    def __init__(self, name):
        super().__init__()
        self.messages, self.logger = [], logging.getLogger(name)

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_corrupt_newest_checkpoint_is_detected_and_the_previous_one_resumes(tmp_path):
    cfg = load_config(config_file(tmp_path, max_steps=6))
    run_training(cfg)
    out = tmp_path / "run"
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4", "checkpoint-6"}
    weights = out / "checkpoint-6" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01      # one flipped bit, same size
    weights.write_bytes(bytes(data))
    reported = []
    assert latest_valid_checkpoint(out, on_corrupt=lambda f, r: reported.append((f.name, r))) == out / "checkpoint-4"
    assert reported[0][0] == "corrupt-checkpoint-6" and "sha256" in reported[0][1]
    # put it back as it was found and let --resume find it itself, then train on to step 8
    (out / "corrupt-checkpoint-6").rename(out / "checkpoint-6")
    cfg = load_config(config_file(tmp_path, max_steps=8))
    with LogRecords("transformers") as records:
        result = run_training(cfg, resume=True)
    assert result.exit_code == 0 and result.global_step == 8
    # the tied lm_head.weight is stored once (as the embeddings): resuming does not call it a missing key
    assert not any("missing keys" in m for m in records.messages)
    corrupt = [e for e in events_of(out) if e["event"] == "corrupt_checkpoint"]
    assert len(corrupt) == 1 and corrupt[0]["cause"].startswith("checkpoint-6: model.safetensors: sha256")
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))   # 1-4 from checkpoint-4, then 5-8 trained again
    assert (out / "corrupt-checkpoint-6").is_dir() and verify_checkpoint(out / "checkpoint-8")[0]


# ------------------------------------------------------------------ anomalies -> rollback

def test_injected_nan_is_rolled_back_and_training_continues_at_a_lower_lr(tmp_path):
    reference = run_training(load_config(config_file(tmp_path, name="reference")))
    cfg = load_config(config_file(tmp_path))
    result = run_training(cfg, callbacks=[Once(5, poison)])       # weights NaN after step 5 -> loss NaN at 6
    assert result.exit_code == 0 and result.global_step == 12
    (rollback,) = [e for e in events_of(result.output_dir) if e["event"] == "rollback"]
    assert rollback["kind"] == "non_finite" and rollback["step"] == 6 and "loss is nan" in rollback["cause"]
    assert rollback["resume_from"].endswith("checkpoint-4") and rollback["lr_scale"] == 0.5
    losses = per_step_losses(result.output_dir)
    assert sorted(losses) == list(range(1, 13)) and all(math.isfinite(v) for v in losses.values())
    ref_losses = per_step_losses(reference.output_dir)
    assert all(losses[s] == pytest.approx(ref_losses[s], abs=1e-6) for s in range(1, 5))   # before: identical
    rates, ref_rates = learning_rates(result.output_dir), learning_rates(reference.output_dir)
    assert all(rates[s] == pytest.approx(ref_rates[s] * 0.5) for s in range(5, 13))      # after: LR halved
    # the summary and the closing line of `resnet-bk train` count what events.jsonl holds, recoveries named
    summary = json.loads((result.output_dir / "train_summary.json").read_text())
    assert summary["events"] == len(events_of(result.output_dir)) == 1 and summary["recoveries"] == 1
    assert describe_events(result.output_dir).startswith("1 event(s) in ")
    assert "(1 rollback); 1 of them recoveries" in describe_events(result.output_dir)
    assert describe_events(reference.output_dir) == "no events (no recoveries)"
    assert not (result.output_dir / "checkpoint-6").exists() or verify_checkpoint(result.output_dir / "checkpoint-6")[0]


def test_nan_parameters_are_never_saved(tmp_path):
    cfg = load_config(config_file(tmp_path, max_steps=8))
    result = run_training(cfg, callbacks=[Once(4, poison)])        # NaN weights at a save step (4)
    (rollback,) = [e for e in events_of(result.output_dir) if e["event"] == "rollback"]
    assert "non-finite parameters at step 4" in rollback["cause"] and rollback["resume_from"].endswith("checkpoint-2")
    assert result.global_step == 8
    from safetensors.torch import load_file
    for ckpt in result.output_dir.glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in load_file(ckpt / "model.safetensors").values())


def test_gradient_spike_is_rolled_back(tmp_path):
    cfg = load_config(config_file(tmp_path, max_steps=16, save_steps=4))
    handles = []

    def blow_up_loss(model):   # x1000 loss for one step -> x1000 gradients before clipping
        handles.append(model.register_forward_hook(
            lambda module, inputs, output: output.__class__({**output, "loss": output["loss"] * 1000})))

    class RemoveHook(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            while handles:
                handles.pop().remove()

    # on_step_begin with global_step 12 starts the 13th optimizer step
    result = run_training(cfg, callbacks=[Once(12, blow_up_loss, when="begin"), RemoveHook()])
    (rollback,) = [e for e in events_of(result.output_dir) if e["event"] == "rollback"]
    assert rollback["kind"] == "grad_spike" and rollback["step"] == 13
    assert rollback["resume_from"].endswith("checkpoint-12")
    assert result.global_step == 16 and all(v < 20 for v in per_step_losses(result.output_dir).values())


def test_rollbacks_are_limited(tmp_path):
    path = config_file(tmp_path, max_steps=8)
    raw = yaml.safe_load(path.read_text())
    raw["fault_tolerance"] = {"max_rollbacks": 1}
    path.write_text(yaml.safe_dump(raw))

    class AlwaysPoison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                poison(model)

    with pytest.raises(TrainingFailedError, match=r"1 rollbacks already done \(fault_tolerance.max_rollbacks=1\)"):
        run_training(load_config(path), callbacks=[AlwaysPoison()])
    assert [e["event"] for e in events_of(tmp_path / "run")] == ["rollback", "gave_up"]


# ------------------------------------------------------------------ out of memory

def inject_out_of_memory(model):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by a test)")


def test_smaller_micro_batch_keeps_the_samples_per_step_exactly():
    assert smaller_micro_batch(4, 1) == (2, 2)
    assert smaller_micro_batch(3, 1) == (1, 3)          # not 1 x 2: that would drop a sample per step
    assert smaller_micro_batch(6, 1) == (3, 2) and smaller_micro_batch(3, 2) == (1, 6)
    assert smaller_micro_batch(12, 2) == (6, 4) and smaller_micro_batch(7, 1) == (1, 7)
    assert smaller_micro_batch(1, 8) is None
    for batch in range(2, 40):
        for accumulation in (1, 3):
            smaller, more = smaller_micro_batch(batch, accumulation)
            assert smaller * more == batch * accumulation and smaller <= batch // 2


# (per-device batch, steps whose start raises OOM, micro-batch x accumulation at the end)
@pytest.mark.parametrize("batch, oom_steps, expected", [(4, [7], (2, 2)), (3, [7], (1, 3)), (6, [3, 7], (1, 6))])
def test_injected_oom_halves_the_micro_batch_and_keeps_the_effective_batch(tmp_path, batch, oom_steps, expected):
    reference = run_training(load_config(config_file(tmp_path, name="reference", max_steps=10,
                                                     per_device_train_batch_size=batch)))
    cfg = load_config(config_file(tmp_path, max_steps=10, per_device_train_batch_size=batch))
    result = run_training(cfg, callbacks=[Once(step, inject_out_of_memory, when="begin") for step in oom_steps])
    assert (result.per_device_train_batch_size, result.gradient_accumulation_steps) == expected
    ooms = [e for e in events_of(result.output_dir) if e["event"] == "out_of_memory"]
    assert [e["step"] for e in ooms] == oom_steps and all("injected" in e["cause"] for e in ooms)
    assert all(e["resume_from"].endswith(f"checkpoint-{e['step'] - 1}") for e in ooms)
    assert all(e["per_device_train_batch_size"] * e["gradient_accumulation_steps"] == batch for e in ooms)
    assert result.global_step == 10
    # same samples per optimizer step: the losses after the resume follow the reference run's
    losses, ref = per_step_losses(result.output_dir), per_step_losses(reference.output_dir)
    difference = max(abs(losses[s] - ref[s]) for s in range(1, 11))
    print(f"batch {batch} x 1 vs {expected[0]} x {expected[1]} after the injected OOM(s): "
          f"max |loss difference| over 10 steps = {difference:.2e}")
    assert difference < 1e-4
    summary = json.loads((result.output_dir / "train_summary.json").read_text())
    assert (summary["per_device_train_batch_size"], summary["gradient_accumulation_steps"]) == expected


def test_oom_at_a_micro_batch_of_1_fails_with_a_clear_message(tmp_path):
    cfg = load_config(config_file(tmp_path, max_steps=4, per_device_train_batch_size=1))
    with pytest.raises(TrainingFailedError, match="out of memory at step 1 with a per-device batch of 1") as caught:
        run_training(cfg, callbacks=[Once(1, inject_out_of_memory, when="begin")])
    assert isinstance(caught.value.__cause__, torch.cuda.OutOfMemoryError)


# ------------------------------------------------------------------ signals and --resume (subprocesses)

def launch(config, *extra):
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "resnet_bk_hf.cli", "train", str(config), *extra], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training subprocess")
        time.sleep(0.02)


# The child trains through run_training with one extra callback: once step PAUSE_AT is logged it writes a
# marker file and sleeps, so the test's SIGKILL always lands at that step, however busy the machine is.
PAUSING_CHILD = """
import pathlib, sys, time
from transformers import TrainerCallback
from resnet_bk_hf.training import load_config, run_training
config, pause_at, marker = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])

class PauseAfterLogging(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == pause_at and "loss" in (logs or {}):
            marker.write_text(str(state.global_step))
            time.sleep(600)

run_training(load_config(config), callbacks=[PauseAfterLogging()])
"""


def test_sigkill_then_resume_gives_the_per_step_losses_of_an_uninterrupted_run(tmp_path):
    steps, pause_at = 30, 12
    killed_cfg = config_file(tmp_path, name="killed", max_steps=steps, save_steps=5, lr_scheduler_type="cosine",
                             warmup_steps=4)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_CHILD, str(killed_cfg), str(pause_at), str(marker)],
                            env=dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = tmp_path / "killed"
    # killed between two checkpoints (10 and 15), so steps 11-12 are lost and trained again after --resume
    wait_for(marker.is_file, proc)
    proc.kill()                                   # SIGKILL: no handler runs, no emergency checkpoint
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not (out / "model.safetensors").exists()
    killed_at = max(per_step_losses(out))
    newest = latest_valid_checkpoint(out)
    assert killed_at == pause_at and newest == out / "checkpoint-10"
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-5", "checkpoint-10"}

    resumed = run_training(load_config(killed_cfg), resume=True)
    assert resumed.exit_code == 0 and resumed.global_step == steps
    straight = run_training(load_config(config_file(tmp_path, name="straight", max_steps=steps, save_steps=5,
                                                     lr_scheduler_type="cosine", warmup_steps=4)))
    ref, got = per_step_losses(straight.output_dir), per_step_losses(out)
    assert sorted(got) == sorted(ref) == list(range(1, steps + 1))
    assert max(abs(got[s] - ref[s]) for s in ref) <= 1e-6
    print(f"killed after step {killed_at}; resumed from {newest.name}; "
          f"max |loss difference| over {steps} steps = {max(abs(got[s] - ref[s]) for s in ref):.2e}")


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(tmp_path):
    cfg = config_file(tmp_path, max_steps=2000, save_steps=1000)
    proc = launch(cfg)
    out = tmp_path / "run"
    wait_for(lambda: (out / "train_log.jsonl").is_file() and len((out / "train_log.jsonl").read_text().splitlines())
             >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "stopped by signal" in output
    (event,) = [e for e in events_of(out) if e["event"] == "signal"]
    ckpt = Path(event["checkpoint"])
    assert event["cause"].startswith("SIGTERM received") and ckpt.name == f"checkpoint-{event['step']}"
    assert event["step"] < 1000 and verify_checkpoint(ckpt) == (True, "ok")
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert latest_valid_checkpoint(out) == ckpt
    # and training goes on from it (named explicitly this time)
    result = run_training(load_config(cfg, [f"training.max_steps={event['step'] + 2}"]), resume=str(ckpt))
    assert result.exit_code == 0 and result.global_step == event["step"] + 2
