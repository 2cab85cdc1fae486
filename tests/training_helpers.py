"""Helpers shared by the training, demo and compare tests: a tiny run's YAML, a spy on the one Trainer builder,
a NaN injector."""
import torch
import yaml


TINY = {"model": {"hidden_size": 16, "num_hidden_layers": 2, "num_heads": 2, "num_shifts": 2},
        "data": {"train": "builtin:demo-validation", "block_size": 32}}


def config_file(tmp_path, name="run", **training):
    args = {"output_dir": str(tmp_path / name), "use_cpu": True, "max_steps": 12, "per_device_train_batch_size": 4,
            "learning_rate": 1e-3, "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": 2,
            "max_grad_norm": 1.0, "seed": 7, "disable_tqdm": True, "dataloader_num_workers": 0}
    args.update(training)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "training": args}))
    return path


def spy_on_build_trainer(monkeypatch, add_callbacks=()):
    """Record every call of the one Trainer builder (training/trainer.py:build_trainer), which still builds; each
    Trainer gets `add_callbacks` too. Returns the list of (config, trainer) calls."""
    from resnet_bk_hf.training import trainer as trainer_lib
    calls, real = [], trainer_lib.build_trainer

    def spy(model, cfg, *args, **kwargs):
        trainer = real(model, cfg, *args, **kwargs)
        for callback in add_callbacks:
            trainer.add_callback(callback)
        calls.append((cfg, trainer))
        return trainer

    monkeypatch.setattr(trainer_lib, "build_trainer", spy)
    return calls


def poison(model):
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
