"""Side-by-side comparison of ResNet-BK with transformers' Mamba and a Transformer (`resnet-bk compare`).

    config.py         the YAML schema, validated (validation.py); `run_config`: the recipe of one run in the
                      training schema of `resnet-bk train` (training/schema.py)
    architectures.py  sizing to a non-embedding parameter target, analytic FLOPs (models: training/models.py)
    data.py           bench corpora through `datasets`, hashes, evaluation token streams, bytes per token
    evaluation.py     perplexity / bits-per-byte, streaming evaluation carrying recurrent state
    single_run.py     one run: its Trainer from training.build_trainer (fault handling included), evaluation
    runner.py         one run per (size, seed, architecture), resumable; the command
    long_context.py   training at N = 512 ... 131072 with equal tokens per step, streaming moby-dick
    fairness.py       refuses runs that differ in tokenizer, data, budget, recipe or seeds
    stats.py          mean, std, t and bootstrap intervals, paired tests, loss spikes
    report.py         summary.json; figures.py: PNG + SVG
    lm_eval_run.py    `resnet-bk lm-eval`: lm-eval-harness `hf` models on the bench tasks (lm_eval_tasks/)
"""
