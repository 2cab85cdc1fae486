"""Directories saved by earlier versions of the package (tests/fixtures/saved_models, written by the code of
commit 0faf570 with tests/fixtures/make_saved_models.py) load with today's code and give the logits they gave
then, and today's code saves them again into directories that load without the package."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import resnet_bk_hf  # noqa: F401  (registers the Auto classes)

from conftest import REFUSE_PACKAGE_PRELUDE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "saved_models"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.pt").is_file())
# The flat model code save_pretrained wrote beside each fixture's weights at 0faf570: the same files for all
# three, so they are kept once and copied back beside the weights where a test loads with trust_remote_code.
OLD_CODE = FIXTURES / "code_0faf570"

# A child interpreter that cannot import resnet_bk_hf: only the directory's own code builds the model.
REMOTE_LOGITS = REFUSE_PACKAGE_PRELUDE + r'''
import sys
import torch
from transformers import AutoModelForCausalLM
model_dir, out_file = sys.argv[1:3]
model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval().double()
expected = torch.load(model_dir + "/expected.pt")
with torch.no_grad():
    logits = model(expected["input_ids"], use_cache=False).logits
torch.save({"logits": logits, "module": type(model).__module__}, out_file)
'''


def test_there_are_fixtures():
    assert len(NAMES) == 3


def _remote_logits(model_dir: Path, tmp_path: Path) -> dict:
    env = {"PATH": os.environ.get("PATH", ""), "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / f"{model_dir.name}-out.pt"
    run = subprocess.run([sys.executable, "-I", "-c", REMOTE_LOGITS, str(model_dir), str(out)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("name", NAMES)
def test_old_directory_loads_with_todays_package_with_the_same_logits(name):
    expected = torch.load(FIXTURES / name / "expected.pt")
    model = AutoModelForCausalLM.from_pretrained(FIXTURES / name).eval().double()
    assert type(model).__module__.startswith("resnet_bk_hf.")
    with torch.no_grad():
        logits = model(expected["input_ids"], use_cache=False).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_old_directory_resaved_by_todays_package_loads_without_it(name, tmp_path):
    """Old directory with its own old code (trust_remote_code), and the same weights saved again by today's code
    (today's flat files): both give the recorded logits in a process that cannot import the package."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / name, old)
    for code in OLD_CODE.glob("*.py"):
        shutil.copy(code, old / code.name)
    torch.testing.assert_close(_remote_logits(old, tmp_path)["logits"], torch.load(old / "expected.pt")["logits"],
                               rtol=0, atol=1e-12)
    resaved = tmp_path / "resaved"
    AutoModelForCausalLM.from_pretrained(old).save_pretrained(resaved)
    shutil.copy(old / "expected.pt", resaved / "expected.pt")
    assert (resaved / "ops_bk.py").is_file() and not (resaved / "kernels.py").exists()
    out = _remote_logits(resaved, tmp_path)
    assert out["module"].startswith("transformers_modules.")
    torch.testing.assert_close(out["logits"], torch.load(old / "expected.pt")["logits"], rtol=0, atol=1e-12)
