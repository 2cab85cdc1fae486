"""Side-by-side comparison of ResNet-BK with transformers' Mamba and a Transformer (`resnet-bk compare`).

    config.py         the YAML schema, validated
    architectures.py  model builders, sizing to a non-embedding parameter target, analytic FLOPs
    data.py           bench corpora through `datasets`, hashes, evaluation token streams, bytes per token
    evaluation.py     perplexity / bits-per-byte, streaming evaluation carrying recurrent state
    runner.py         one Trainer run per (size, seed, architecture), resumable; the command
    long_context.py   training at N = 512 ... 131072 with equal tokens per step, streaming moby-dick
    fairness.py       refuses runs that differ in tokenizer, data, budget, recipe or seeds
    stats.py          mean, std, t and bootstrap intervals, paired tests, loss spikes
    report.py         summary.json; figures.py: PNG + SVG
    lm_eval_run.py    `resnet-bk lm-eval`: lm-eval-harness `hf` models on the bench tasks (lm_eval_tasks/)
"""
