"""Model cards: every figure comes from the result JSON (huggingface_hub ModelCard / ModelCardData)."""
import json
import random

import pytest
from huggingface_hub import ModelCard

from resnet_bk_hf.cli import main as cli_main
from resnet_bk_hf.model_card import build_model_card, card_eval_values

from conftest import ROOT


def fake_demo_result(rng):
    loss = rng.uniform(3.0, 7.0)
    return {"validation_loss": loss, "validation_perplexity": 2.718281828459045 ** loss,
            "validation_tokens": rng.randrange(1000, 99999), "train_tokens_seen": rng.randrange(10**5, 10**7),
            "train_seconds": rng.uniform(10, 500), "max_steps": rng.randrange(10, 1000),
            "parameters": rng.randrange(10**5, 10**7), "device": "cpu", "device_name": "x86_64",
            "config": {"hidden_size": 8 * rng.randrange(4, 40), "num_hidden_layers": rng.randrange(1, 9),
                       "num_heads": 4, "num_shifts": rng.randrange(1, 9), "vocab_size": 8192,
                       "model_type": "resnet_bk"}}


def test_card_numbers_equal_the_json(tmp_path, seed):
    rng = random.Random(seed)
    result = fake_demo_result(rng)
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(result))
    cli_main(["model-card", str(path), "--out", str(tmp_path / "README.md"), "--repo-id", "someone/tiny"])
    card = ModelCard.load(tmp_path / "README.md")         # parse back what was written
    assert card_eval_values(card) == {"perplexity": result["validation_perplexity"], "loss": result["validation_loss"]}
    text = card.text
    cfg = result["config"]
    for shown in (f"| perplexity | {result['validation_perplexity']:.2f} |",
                  f"| cross-entropy (nats/token) | {result['validation_loss']:.4f} |",
                  f"| parameters | {result['parameters']:,} |", f"| steps | {result['max_steps']} |",
                  f"| tokens seen | {result['train_tokens_seen']} |",
                  f"{result['validation_tokens']} tokens",
                  f"| {cfg['hidden_size']} / {cfg['num_hidden_layers']} / 4 / {cfg['num_shifts']} |",
                  'from_pretrained("someone/tiny", trust_remote_code=True)'):
        assert shown in text, shown
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "text-generation"


def test_generic_eval_results_and_bad_files(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"eval_results": [{"dataset_name": "wikitext-2 test", "metric_type": "perplexity",
                                                  "metric_value": 123.456, "command": "make eval"}]}))
    card = build_model_card([path], model_name="m")
    assert card_eval_values(card) == {"perplexity": 123.456}
    assert "| wikitext-2 test | perplexity | 123.456 | `make eval` |" in card.text
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="neither a demo result"):
        build_model_card([tmp_path / "other.json"])
    with pytest.raises(ValueError, match="cannot read result JSON"):
        build_model_card([tmp_path / "missing.json"])


@pytest.mark.parametrize("card_dir", sorted(p.parent for p in (ROOT / "hub_cards").glob("*/README.md")))
def test_committed_cards_are_regenerated_from_their_json(card_dir):
    """hub_cards/<name>/README.md must be exactly what the generator makes from the JSON beside it."""
    meta = json.loads((card_dir / "card.json").read_text())
    card = build_model_card([card_dir / f for f in meta["results"]], repo_id=meta.get("repo_id"),
                            model_name=meta.get("model_name"))
    assert (card_dir / "README.md").read_text() == str(card)
