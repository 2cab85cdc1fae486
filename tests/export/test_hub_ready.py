"""Hub-ready directories (auto_map + code), pipeline("text-generation"), and torch.hub."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import pipeline
from transformers.dynamic_module_utils import get_imports, get_relative_imports

from resnet_bk_hf import ResNetBKForCausalLM
from resnet_bk_hf.remote_code import AUTO_MAP, ENTRY_POINT, import_closure
from resnet_bk_hf.tokenization import load_tokenizer

from conftest import REFUSE_PACKAGE_PRELUDE, ROOT, tiny_config

# Runs in a child interpreter with -I (no PYTHONPATH, no user site, no script dir on sys.path) and an
# import hook that refuses resnet_bk_hf, so only the directory's own code can build the model.
REMOTE_LOAD = REFUSE_PACKAGE_PRELUDE + r'''
import json, sys
sys.path = [p for p in sys.path if p not in ("", sys.argv[4])]
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
torch.set_num_threads(1)
model_dir, ids_file, out_file = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
ids = torch.load(ids_file)
with torch.no_grad():
    logits = model(ids).logits
model.save_pretrained(model_dir + "-resaved")          # saving from the remote code writes the code again
again = AutoModelForCausalLM.from_pretrained(model_dir + "-resaved", trust_remote_code=True).eval()
with torch.no_grad():
    resaved_equal = torch.equal(again(ids).logits, logits)
generator = pipeline("text-generation", model=model_dir, trust_remote_code=True)
text = generator("Mr. Speaker,", max_new_tokens=5, do_sample=False)[0]["generated_text"]
torch.save({"logits": logits, "resaved_equal": resaved_equal, "text": text, "class_module": type(model).__module__,
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "resnet_bk_hf")}, out_file)
'''


def small_vocab_model(**overrides):
    """Tiny sizes but the shipped tokenizer's vocabulary, so pipelines can run on it."""
    torch.manual_seed(0)
    tok = load_tokenizer()
    return ResNetBKForCausalLM(tiny_config(vocab_size=len(tok), **overrides)).eval(), tok


# The prime-bump positional potential imports theory/primes.py: the saved directory must carry it too.
@pytest.mark.parametrize("overrides", [{}, {"positional_potential": "prime_bump"}], ids=["default", "prime_bump"])
def test_saved_directory_loads_with_trust_remote_code_without_the_package(tmp_path, overrides):
    model, tok = small_vocab_model(**overrides)
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copytree(tmp_path / "saved", fresh / "model")     # nothing links it to the original location
    ids = torch.randint(2, len(tok), (2, 13))
    torch.save(ids, fresh / "ids.pt")
    env = {"PATH": os.environ.get("PATH", ""), "HF_HOME": str(fresh / "hf_home"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run([sys.executable, "-I", "-c", REMOTE_LOAD, str(fresh / "model"), str(fresh / "ids.pt"),
                          str(fresh / "out.pt"), str(ROOT)], cwd=fresh, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    out = torch.load(fresh / "out.pt")
    assert out["class_module"].startswith("transformers_modules.") and out["loaded"] == []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                   # the child ran with one thread too
    try:
        with torch.no_grad():
            expected = model(ids).logits
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out["logits"], expected)
    assert out["resaved_equal"]
    assert out["text"].startswith("Mr. Speaker,") and len(out["text"]) > len("Mr. Speaker,")


def test_written_code_needs_only_torch_and_transformers(tmp_path):
    model, _ = small_vocab_model()
    model.save_pretrained(tmp_path)
    written = {p.name for p in tmp_path.glob("*.py")}
    closure = import_closure()
    assert written == {f"{m.flat_name}.py" for m in closure.values()} | {ENTRY_POINT}
    # the closure reaches into subpackages (the scan operators), so the flat names are really computed
    assert any("." in dotted for dotted in closure) and "ops_bk.py" in written
    for name in written:
        # what transformers' check_imports would demand on a Hub load: no Triton, no resnet_bk_hf
        assert set(get_imports(tmp_path / name)) <= {"__future__", "torch", "transformers", "math", "os", "shutil",
                                                      "dataclasses", "typing", "numbers", "pathlib", "warnings",
                                                      "functools", "enum", "types", "contextlib", "ast"}, name
        for rel in get_relative_imports(tmp_path / name):       # every relative import is a file beside it
            assert (tmp_path / f"{rel}.py").is_file(), (name, rel)


def test_pipeline_text_generation_on_a_saved_directory(tmp_path):
    model, tok = small_vocab_model()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    text = generator("Mr. Speaker,", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    ids = tok("Mr. Speaker,", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert text == tok.decode(expected[0], skip_special_tokens=True)


def test_torch_hub_load_local(tmp_path):
    model = torch.hub.load(str(ROOT), "resnet_bk", source="local", config="tiny")
    assert isinstance(model, ResNetBKForCausalLM) and model.config.hidden_size == 64
    ids = torch.randint(0, model.config.vocab_size, (1, 6))
    with torch.no_grad():
        logits = model.eval()(ids).logits
    assert logits.shape == (1, 6, model.config.vocab_size) and torch.isfinite(logits).all()
    model.save_pretrained(tmp_path)
    loaded = torch.hub.load(str(ROOT), "resnet_bk", source="local", pretrained=str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, logits)
    small = torch.hub.load(str(ROOT), "resnet_bk_small", source="local", num_shifts=2)
    assert small.config.hidden_size == 128 and small.config.num_shifts == 2
    with pytest.raises(ValueError, match="config must be one of"):
        torch.hub.load(str(ROOT), "resnet_bk", source="local", config="huge")


def test_saved_tokenizer_names_a_class_every_transformers_version_loads(tmp_path):
    load_tokenizer().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
