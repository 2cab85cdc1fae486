"""Hub-ready model directories: the modeling code and `auto_map`, for `trust_remote_code=True`.

`ResNetBKPreTrainedModel.save_pretrained` calls `set_auto_map` and `write_remote_code`, so every
saved directory carries this package's model code and loads where the package is not installed:

    AutoModelForCausalLM.from_pretrained(DIR_OR_HUB_ID, trust_remote_code=True)

Why the files are written here rather than by transformers' `register_for_auto_class`: the dynamic
module loader (transformers.dynamic_module_utils) resolves a relative import `from .x import y` to
the file `x.py` beside the importing file, so it handles a flat directory only; `from .kernels import`
names the package `kernels/`, which it cannot copy. This module writes the same sources flat:
`kernels/__init__.py` becomes `kernels.py`, `kernels/naive.py` becomes `naive.py`, and so on. The
relative imports then resolve unchanged (`.naive` from `kernels.py` is the sibling `naive.py`).

The entry point named in `auto_map` is a generated file, `modeling_resnet_bk.py`, that imports every
other file directly: transformers 4.57 copies only the *direct* relative imports of that file into
its module cache when loading from a local directory (5.x follows them recursively), so this is
what makes the same directory load on both.

Two edits are made while copying. `modeling.py`'s `from .theory.primes import` (the prime-bump
positional potential, a subpackage) becomes `from .primes import`, the flat copy of `theory/primes.py`.
`triton_scan.py`'s `import triton` is wrapped in `try/except
ImportError: raise` (same behaviour). transformers' `check_imports`, which vets every remote file
fetched from the Hub, skips imports inside try blocks; without the wrapper it would refuse to load
the model on machines without Triton, where the package itself falls back to the CPU scan.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent

# flat file name in the saved directory -> path inside the package
REMOTE_CODE_FILES: Dict[str, str] = {
    "configuration.py": "configuration.py",
    "modeling.py": "modeling.py",
    "remote_code.py": "remote_code.py",
    "kernels.py": "ops/bk/__init__.py",
    "naive.py": "ops/bk/naive.py",
    "recurrent.py": "ops/bk/recurrent.py",
    "parallel.py": "ops/bk/parallel.py",
    "triton_scan.py": "ops/bk/triton/scan.py",
    "primes.py": "theory/primes.py",
}

ENTRY_POINT = "modeling_resnet_bk.py"
AUTO_MAP = {
    "AutoConfig": "configuration.ResNetBKConfig",
    "AutoModel": "modeling_resnet_bk.ResNetBKModel",
    "AutoModelForCausalLM": "modeling_resnet_bk.ResNetBKForCausalLM",
    "AutoModelForSequenceClassification": "modeling_resnet_bk.ResNetBKForSequenceClassification",
}

ENTRY_POINT_SOURCE = '''"""ResNet-BK for `trust_remote_code=True`; the model is in modeling.py.

Written by resnet_bk_hf/remote_code.py.

Every code file of the directory is imported here directly: transformers 4.57 copies only the direct
relative imports of the `auto_map` module when it loads a local directory.
"""
from .configuration import ResNetBKConfig  # noqa: F401
from .kernels import causal_resolvent_scan  # noqa: F401
from .modeling import ResNetBKForCausalLM, ResNetBKForSequenceClassification, ResNetBKModel  # noqa: F401
from .naive import causal_resolvent_scan_naive  # noqa: F401
from .parallel import causal_resolvent_scan_parallel  # noqa: F401
from .primes import positional_prime_bump  # noqa: F401
from .recurrent import causal_resolvent_scan_recurrent  # noqa: F401
from .remote_code import write_remote_code  # noqa: F401

try:  # optional: needs Triton (and a GPU to be used)
    from .triton_scan import causal_resolvent_scan_triton  # noqa: F401
except ImportError:
    pass
'''

_PRIMES_IMPORT = "from .theory.primes import"
_PRIMES_IMPORT_FLAT = "from .primes import"
_TRITON_IMPORTS = "import triton\nimport triton.language as tl\n"
_TRITON_IMPORTS_GUARDED = ("try:  # written by remote_code.py: transformers' check_imports skips try blocks, so\n"
                           "    # a Hub load does not demand Triton; without it the package uses the CPU scan\n"
                           "    import triton\n    import triton.language as tl\nexcept ImportError:\n    raise\n")


def _source(flat_name: str) -> Path:
    """The file inside the package, or its flat sibling when this code itself runs from a saved directory."""
    packaged = HERE / REMOTE_CODE_FILES[flat_name]
    return packaged if packaged.is_file() else HERE / flat_name


def set_auto_map(config) -> None:
    config.auto_map = dict(AUTO_MAP)


def write_remote_code(save_directory) -> List[Path]:
    """Write the model code, flat, into `save_directory`. Returns the written paths."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for flat_name in REMOTE_CODE_FILES:
        source, target = _source(flat_name), out / flat_name
        if flat_name == "triton_scan.py":
            text = source.read_text(encoding="utf-8")
            if _TRITON_IMPORTS_GUARDED not in text:
                if _TRITON_IMPORTS not in text:
                    raise RuntimeError(f"{source}: expected the lines {_TRITON_IMPORTS!r} to guard; "
                                       "update resnet_bk_hf/remote_code.py")
                text = text.replace(_TRITON_IMPORTS, _TRITON_IMPORTS_GUARDED, 1)
            text = text.replace("from ..naive import", "from .naive import").replace("from ..recurrent import", "from .recurrent import")
            target.write_text(text, encoding="utf-8")
        elif flat_name == "modeling.py" and source.resolve() != target.resolve():
            text = source.read_text(encoding="utf-8")
            if _PRIMES_IMPORT not in text and _PRIMES_IMPORT_FLAT not in text:
                raise RuntimeError(f"{source}: expected {_PRIMES_IMPORT!r}; update resnet_bk_hf/remote_code.py")
            text = text.replace(_PRIMES_IMPORT, _PRIMES_IMPORT_FLAT).replace("from .ops.bk import", "from .kernels import")
            target.write_text(text, encoding="utf-8")
        elif flat_name == "kernels.py" and source.resolve() != target.resolve():
            text = source.read_text(encoding="utf-8")
            target.write_text(text.replace("from .triton import", "from .triton_scan import")
                              .replace("from . import triton ", "from . import triton_scan "), encoding="utf-8")
        elif source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        written.append(target)
    (out / ENTRY_POINT).write_text(ENTRY_POINT_SOURCE, encoding="utf-8")
    written.append(out / ENTRY_POINT)
    return written
