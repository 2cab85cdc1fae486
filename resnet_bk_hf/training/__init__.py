"""Training: one validated schema, one Trainer builder, one fault-tolerant run loop.

    schema.py       the YAML schema (model / data / training / fault_tolerance / output), `load_config`
    trainer.py      `build_trainer`: the Trainer of every run (train, demo, compare), `ResilientTrainer`
    run.py          `run_training`: the attempt loop (rollback, out-of-memory, signals), `resnet-bk train`
    callbacks.py    the anomaly guard, signal checkpoints, manifests, JSONL log, event log
    progress.py     plain progress lines when stdout is not a terminal
    checkpoints.py  sha256 manifests, the newest intact checkpoint
    models.py       `build_model`: ResNet-BK or a baseline from a spec
    data.py         tokenizer and packed datasets of a run
    plots.py        the loss curve

The names below were the public names of the former modules resnet_bk_hf/train.py, training.py and
checkpoints.py; they stay importable from here.
"""
from .callbacks import (RECOVERY_EVENTS, Anomaly, ChecksumManifestCallback, EventLog, JsonlLogCallback,
                        NonFiniteLossCallback, NonFiniteLossError, SignalCheckpointCallback, StepTimerCallback,
                        TrainingGuardCallback, count_events, first_non_finite, parameters_are_finite,
                        scale_learning_rate)
from .checkpoints import MANIFEST_NAME, latest_valid_checkpoint, list_checkpoints, verify_checkpoint, write_manifest
from .models import ArchSpec, build_model, model_config
from .plots import loss_history, plot_loss_curve
from .progress import PlainProgressCallback
from .run import (TrainingFailedError, TrainResult, build_model_config, main_train, per_step_losses, run_training,
                  smaller_micro_batch)
from .schema import (ConfigError, DataConfig, FaultToleranceConfig, OutputConfig, TrainConfig, load_config,
                     parse_config)
from .trainer import FaultHandlers, ResilientTrainer, build_trainer, make_training_args

__all__ = [
    "RECOVERY_EVENTS", "Anomaly", "ArchSpec", "ChecksumManifestCallback", "ConfigError", "DataConfig", "EventLog",
    "FaultHandlers", "FaultToleranceConfig", "JsonlLogCallback", "MANIFEST_NAME", "NonFiniteLossCallback",
    "NonFiniteLossError", "OutputConfig", "PlainProgressCallback", "ResilientTrainer", "SignalCheckpointCallback",
    "StepTimerCallback", "TrainConfig", "TrainResult", "TrainingFailedError", "TrainingGuardCallback",
    "build_model", "build_model_config", "build_trainer", "count_events", "first_non_finite",
    "latest_valid_checkpoint", "list_checkpoints", "load_config", "loss_history", "main_train", "make_training_args",
    "model_config", "parameters_are_finite", "parse_config", "per_step_losses", "plot_loss_curve", "run_training",
    "scale_learning_rate", "smaller_micro_batch", "verify_checkpoint", "write_manifest",
]
