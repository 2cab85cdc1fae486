"""The one place a `transformers.Trainer` is made: `build_trainer`. `resnet-bk train` (run.py), `resnet-bk demo`
(demo.py, through run.py) and every run of `resnet-bk compare` (compare/single_run.py, through run.py) call it.

It turns a checked `TrainConfig` (schema.py) into TrainingArguments with this package's defaults
(`make_training_args`), and returns a `ResilientTrainer` with the fault-handling callbacks attached: the
anomaly guard, sha256 manifests after each save, the JSONL log, the SIGTERM/SIGINT checkpoint (when
`fault_tolerance.handle_signals`), and plain progress lines instead of tqdm bars when stdout is not a terminal.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
from transformers import Trainer, default_data_collator
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging

from .callbacks import (ChecksumManifestCallback, JsonlLogCallback, SignalCheckpointCallback, TrainingGuardCallback,
                        parameters_are_finite)
from .progress import PlainProgressCallback, quiet_library_bars, stdout_is_terminal
from .schema import ConfigError, FaultToleranceConfig, TrainConfig, training_argument_hints

logger = logging.get_logger("resnet_bk_hf.training")


def make_training_args(cfg: TrainConfig, **changes):
    """TrainingArguments from the `training:` section (and `changes`), with this package's defaults where it
    says nothing."""
    from transformers import TrainingArguments
    kwargs = dict(cfg.training, **changes)
    kwargs.setdefault("output_dir", str(Path("outputs") / cfg.path.stem))
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_total_limit", 3)            # keep the last few: a corrupt newest one has a fallback
    kwargs.setdefault("logging_nan_inf_filter", False)  # show NaN losses in the log rather than hide them
    kwargs.setdefault("disable_tqdm", not stdout_is_terminal())   # plain lines instead (PlainProgressCallback)
    if cfg.data.validation:
        kwargs.setdefault("eval_strategy", "steps")
    if "bf16" not in kwargs and "fp16" not in kwargs and not kwargs.get("use_cpu"):
        kwargs["bf16"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    hints = training_argument_hints()
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing: accept either name
    if "activation_checkpointing" in hints and "gradient_checkpointing" in kwargs:
        kwargs.setdefault("activation_checkpointing", kwargs.pop("gradient_checkpointing"))
    elif "activation_checkpointing" not in hints and "activation_checkpointing" in kwargs:
        kwargs.setdefault("gradient_checkpointing", kwargs.pop("activation_checkpointing"))
    report_to = kwargs["report_to"]
    if "tensorboard" in ([report_to] if isinstance(report_to, str) else list(report_to or [])):
        try:
            import tensorboard  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"{cfg.path}: training.report_to asks for tensorboard, which is not installed "
                              "(pip install 'resnet_bk_hf[train]' or tensorboard)") from e
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cfg.path}: training: {e}") from e


@dataclass
class FaultHandlers:
    """The stateful fault-handling callbacks of one run; they outlive the Trainer of each attempt."""

    guard: TrainingGuardCallback
    signals: Optional[SignalCheckpointCallback] = None

    @classmethod
    def from_config(cls, ft: FaultToleranceConfig) -> "FaultHandlers":
        guard = TrainingGuardCallback(grad_spike_factor=ft.grad_spike_factor, window=ft.grad_spike_window,
                                      min_history=ft.grad_spike_min_history, divergence_factor=ft.divergence_factor,
                                      divergence_window=ft.divergence_window, lr_decay=ft.lr_decay)
        return cls(guard, SignalCheckpointCallback() if ft.handle_signals else None)

    def callbacks(self) -> list:
        return [self.guard, ChecksumManifestCallback(), JsonlLogCallback(), *([self.signals] if self.signals else [])]


def tokens_per_step(args, block_size: Optional[int]) -> Optional[int]:
    """Tokens of one optimizer step over every process (None without a block size)."""
    if not block_size:
        return None
    return args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps * block_size


def build_trainer(model, cfg: TrainConfig, train_dataset=None, eval_dataset=None, extra_callbacks: Iterable = (), *,
                  handlers: Optional[FaultHandlers] = None, data_collator=None, **arg_changes) -> "ResilientTrainer":
    """The Trainer of a run: TrainingArguments from `cfg` (+ `arg_changes`, e.g. the micro-batch after an
    out-of-memory recovery) and the fault-handling callbacks (`handlers`, default: fresh ones from
    `cfg.fault_tolerance`), then `extra_callbacks`. `trainer.fault_handlers` holds the handlers."""
    args = make_training_args(cfg, **arg_changes)
    handlers = handlers or FaultHandlers.from_config(cfg.fault_tolerance)
    trainer = ResilientTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                               data_collator=data_collator or default_data_collator, guard=handlers.guard,
                               callbacks=[*handlers.callbacks(), *extra_callbacks])
    trainer.fault_handlers = handlers
    if args.disable_tqdm:   # Trainer prints raw log dicts then: one readable line instead
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(PlainProgressCallback(tokens_per_step(args, cfg.data.block_size)))
    if not stdout_is_terminal():
        quiet_library_bars()
    return trainer


def tied_parameter_names(model) -> set:
    """Names of parameters that are another parameter (lm_head.weight tied to the input embeddings)."""
    every = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return every - {name for name, _ in model.named_parameters()}


class ResilientTrainer(Trainer):
    """`Trainer` that shows every optimizer step's loss and gradient norm to a `TrainingGuardCallback`.

    Trainer hands callbacks neither the per-step loss nor the gradient norm, so this subclass collects the
    loss in `training_step` and reads the gradient norm where Trainer passes it on to logging (only when the
    guard checks every step: that reads the loss, a synchronisation with the GPU). On an anomaly the step
    is neither saved nor evaluated and training stops (the caller rolls back or ends the run).
    """

    def __init__(self, *args, guard: TrainingGuardCallback, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = guard
        if guard not in self.callback_handler.callbacks:
            self.add_callback(guard)
        self._step_loss = None

    def get_train_dataloader(self):
        # transformers 4.x resumes with the batch size stored in the checkpoint; after an out-of-memory
        # recovery the configured (halved) per-device batch must win.
        if not self.args.auto_find_batch_size:
            self._train_batch_size = self.args.train_batch_size
        return super().get_train_dataloader()

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step_loss = loss.detach() if self._step_loss is None else self._step_loss + loss.detach()
        return loss

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        step_loss, self._step_loss = self._step_loss, None
        if step_loss is not None and self.state.global_step > 0 and self.guard.anomaly is None:
            if self.guard.per_step:
                loss = float(self.accelerator.reduce(step_loss, reduction="mean"))
                norm = None if grad_norm is None else float(grad_norm)
                self.guard.check_step(self.state.global_step, loss, norm)
            if self.guard.anomaly is None and self.control.should_save and not self._parameters_finite_everywhere():
                self.guard.flag_parameters(self.state.global_step)
        if self.guard.anomaly is not None:   # also at the epoch-end call that follows the stop
            self.control.should_save = False
            self.control.should_evaluate = False
            self.control.should_training_stop = True
        return super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)

    def _parameters_finite_everywhere(self) -> bool:
        finite = torch.tensor(float(parameters_are_finite(self.model)), device=self.args.device)
        return bool(self.accelerator.reduce(finite, reduction="sum") == self.args.world_size)

    def _issue_warnings_after_load(self, load_result) -> None:
        # Checkpoints store a tied lm_head.weight once (as the input embeddings): loading one reports it as a
        # "missing key", which it is not. That exact case is re-tied and noted at info level; any other missing
        # or unexpected key is still reported by Trainer.
        missing = set(load_result.missing_keys)
        if missing and missing <= tied_parameter_names(self.model):
            self.model.tie_weights()
            logger.info(f"{sorted(missing)} tied to the input embeddings (stored once in the checkpoint): re-tied")
            load_result = load_result._replace(missing_keys=[])
        super()._issue_warnings_after_load(load_result)
