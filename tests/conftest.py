import os
import sys
from pathlib import Path

import pytest
import torch

# Without CUDA the Triton kernels run in the interpreter. Triton reads this when it is first imported, and
# transformers' Trainer imports it, so it must be set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESNET_BK_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def seed():
    """A fresh seed per test run (printed on failure) so references are checked on new inputs."""
    value = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(value)
    print(f"seed={value}", file=sys.stderr)
    return value


def tiny_config(**kwargs):
    from resnet_bk_hf import ResNetBKConfig
    base = dict(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_heads=2, num_shifts=3,
                intermediate_size=40, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    base.update(kwargs)
    return ResNetBKConfig(**base)


def widened_model(**kwargs):
    """A tiny ResNetBKForCausalLM in eval mode with its mixers' in_proj redrawn at std 0.5: the init leaves
    the potentials near 0, and the tests need a Hamiltonian far from trivial."""
    import torch
    from resnet_bk_hf import ResNetBKForCausalLM
    from resnet_bk_hf.modeling import ResNetBKMixer
    model = ResNetBKForCausalLM(tiny_config(**kwargs)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ResNetBKMixer):
                m.in_proj.weight.normal_(0, 0.5)
    return model
