"""Hub model cards from result JSON files, with `huggingface_hub.ModelCard` / `ModelCardData`.

    resnet-bk model-card results/demo.json --model-dir outputs/demo-model --out hub_cards/resnet-bk-demo/README.md

Every figure on the card is read from the JSON (written by `resnet-bk demo`, or any file with an
`eval_results` list, format below); nothing is typed by hand. The metadata block carries the same
numbers as `model-index` eval results, so the Hub shows them in the evaluation widget.

Accepted JSON:
- a demo result (`resnet_bk_hf/demo.py`: validation_loss, validation_perplexity, validation_tokens,
  parameters, train_tokens_seen, train_seconds, max_steps, device, device_name, config, ...);
- {"eval_results": [{"dataset_name", "metric_type", "metric_value", "command"?, "dataset_type"?,
  "dataset_split"?}]} for results measured elsewhere (lm-eval runs, benchmarks).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .configuration import ResNetBKConfig
from .data import DEMO_VALID_FROM_YEAR

DEMO_TRAINING_DATA = (f"The built-in demo corpus (`resnet_bk_hf/data/sotu_demo.jsonl`, CC0 1.0): State of the "
                      f"Union addresses before {DEMO_VALID_FROM_YEAR}")
DEMO_EVAL_DATA = f"State of the Union addresses from {DEMO_VALID_FROM_YEAR} on (held out)"

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A ResNet-BK causal language model: pre-norm residual blocks whose sequence mixer is the causal
resolvent of a learned tridiagonal Hamiltonian (the BK layer), computed in O(N) per sequence and
O(1) per generated token.

## Intended use

Research on recurrent (state-space-like) language models and their mixers; a small base model to
fine-tune (`Trainer`, PEFT) or to export to ONNX. It is not instruction-tuned and not meant to
produce text for people to rely on.

## How to use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
# the directory carries its modeling code (auto_map): no extra package needed
model = AutoModelForCausalLM.from_pretrained("{{ repo_id }}", trust_remote_code=True)
tok = AutoTokenizer.from_pretrained("{{ repo_id }}")
out = model.generate(**tok("Mr. Speaker,", return_tensors="pt"), max_new_tokens=40)
print(tok.decode(out[0]))
```

With the `resnet_bk_hf` package installed, `import resnet_bk_hf` and drop `trust_remote_code`.

## Architecture

| field | value |
| --- | --- |
{% for name, value in architecture %}| {{ name }} | {{ value }} |
{% endfor %}
## Training data

{{ training_data }}.
{% if training %}
## Training

| field | value |
| --- | --- |
{% for name, value in training %}| {{ name }} | {{ value }} |
{% endfor %}{% endif %}
## Evaluation

| data | metric | value | command |
| --- | --- | --- | --- |
{% for row in evaluation %}| {{ row.data }} | {{ row.metric }} | {{ row.value }} | {{ row.command }} |
{% endfor %}
Source of these figures: {{ sources }}.

## Limitations

A small research model; English only; trained on public-domain political speeches (and, for the
bench models, the Brown corpus), with their biases and their era's language.
"""


def _config_from(result: dict, model_dir: Optional[Path]) -> Optional[ResNetBKConfig]:
    if model_dir is not None and (model_dir / "config.json").is_file():
        return ResNetBKConfig.from_pretrained(str(model_dir))
    if "config" in result:
        known = set(ResNetBKConfig().to_dict())
        return ResNetBKConfig(**{k: v for k, v in result["config"].items() if k in known})
    return None


def _demo_rows(result: dict):
    rows = [dict(data=DEMO_EVAL_DATA + f", {result['validation_tokens']} tokens", metric="perplexity",
                 value=f"{result['validation_perplexity']:.2f}", command="`resnet-bk demo`",
                 eval=("perplexity", result["validation_perplexity"])),
            dict(data=DEMO_EVAL_DATA, metric="cross-entropy (nats/token)", value=f"{result['validation_loss']:.4f}",
                 command="`resnet-bk demo`", eval=("loss", result["validation_loss"]))]
    training = [("steps", result["max_steps"]), ("tokens seen", result["train_tokens_seen"]),
                ("training time (s)", f"{result['train_seconds']:.0f}"),
                ("hardware", f"{result['device']} ({result.get('device_name') or 'unnamed'})")]
    return rows, training


def _generic_rows(result: dict):
    rows = []
    for r in result["eval_results"]:
        for key in ("dataset_name", "metric_type", "metric_value"):
            if key not in r:
                raise ValueError(f"eval_results entry {r} lacks {key!r}")
        rows.append(dict(data=r["dataset_name"], metric=r["metric_type"], value=r["metric_value"],
                         command=f"`{r['command']}`" if r.get("command") else "",
                         eval=(r["metric_type"], r["metric_value"]),
                         dataset_type=r.get("dataset_type"), dataset_split=r.get("dataset_split")))
    return rows


def build_model_card(result_files: Sequence[str | Path], model_dir: Optional[str | Path] = None,
                     repo_id: Optional[str] = None, model_name: Optional[str] = None,
                     training_data: Optional[str] = None) -> ModelCard:
    """A ModelCard whose architecture, training and evaluation figures come from `result_files`."""
    if not result_files:
        raise ValueError("result_files is empty: a card needs at least one result JSON")
    model_dir = Path(model_dir) if model_dir is not None else None
    results = []
    for path in result_files:
        try:
            results.append((Path(path), json.loads(Path(path).read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read result JSON {path}: {e}") from e
    evaluation, training, config, parameters, is_demo = [], [], None, None, False
    for path, result in results:
        if "validation_perplexity" in result:
            rows, training = _demo_rows(result)
            evaluation += rows
            parameters = result.get("parameters", parameters)
            is_demo = True
        elif "eval_results" in result:
            evaluation += _generic_rows(result)
        else:
            raise ValueError(f"{path}: neither a demo result (validation_perplexity) nor an eval_results list")
        config = config or _config_from(result, model_dir)
    model_name = model_name or (model_dir.name if model_dir is not None else "resnet-bk")
    repo_id = repo_id or model_name
    architecture: List[tuple] = []
    if parameters is not None:
        architecture.append(("parameters", f"{parameters:,}"))
    if config is not None:
        sizes = f"{config.hidden_size} / {config.num_hidden_layers} / {config.num_heads} / {config.num_shifts}"
        modes = f"{config.mixer_mode} / {config.hopping_mode} / {config.ffn_type}"
        architecture += [("d_model / layers / heads / shifts K", sizes), ("mixer mode / hopping / FFN", modes),
                         ("vocabulary", config.vocab_size)]
    training_data = training_data or (DEMO_TRAINING_DATA if is_demo else "see the result files")
    eval_results = [EvalResult(task_type="text-generation", dataset_type=row.get("dataset_type") or "text",
                               dataset_name=row["data"], dataset_split=row.get("dataset_split"),
                               metric_type=row["eval"][0], metric_value=row["eval"][1])
                    for row in evaluation]
    card_data = ModelCardData(model_name=model_name, license="apache-2.0", library_name="transformers",
                              pipeline_tag="text-generation", language="en",
                              tags=["resnet-bk", "recurrent", "causal-lm", "custom_code"], eval_results=eval_results)
    return ModelCard.from_template(card_data, template_str=TEMPLATE, model_name=model_name, repo_id=repo_id,
                                   architecture=architecture, training=training, training_data=training_data,
                                   evaluation=evaluation,
                                   sources=", ".join(f"`{p.name}`" for p, _ in results))


def write_model_card(result_files: Sequence[str | Path], out: str | Path, **kwargs) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    build_model_card(result_files, **kwargs).save(str(out))
    return out


def card_eval_values(card: ModelCard) -> Dict[str, float]:
    """metric type -> value, as the card's metadata (model-index) holds them."""
    return {r.metric_type: r.metric_value for r in (card.data.eval_results or [])}
