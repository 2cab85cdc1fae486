"""remote_code's import closure and flat rewriting on a synthetic package: any layout saves and loads."""
import importlib.util
import sys
import textwrap

import pytest

from resnet_bk_hf import remote_code

PACKAGE = {
    "modeling.py": """
        from .configuration import Config
        from .ops.bk import scan

        def run():
            from .theory.primes import prime   # a lazy import inside a function is part of the closure too
            return scan(Config.value) + prime()
    """,
    "configuration.py": """
        class Config:
            value = 3
    """,
    "unused.py": """
        VALUE = 'not imported by the roots: not saved'
    """,
    "ops/__init__.py": """
        '''parents of an imported module are not saved unless imported themselves'''
    """,
    "ops/bk/__init__.py": """
        from .dispatch import scan
        from . import naive as reference  # noqa: F401
    """,
    "ops/bk/dispatch.py": """
        from ..bk.naive import (
            double,
        )

        def scan(x):
            return double(x)
    """,
    "ops/bk/naive.py": """
        def double(x):
            return 2 * x
    """,
    "theory/__init__.py": "",
    "theory/primes.py": """
        def prime():
            return 7
    """,
}


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _import_flat(directory, name):
    """Import the flat directory as a package named `name` (as transformers' module cache does)."""
    spec = importlib.util.spec_from_file_location(name, directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.modeling")


def test_closure_and_flat_directory_of_a_nested_package(tmp_path):
    _write(tmp_path / "pkg", PACKAGE)
    modules = remote_code.import_closure(tmp_path / "pkg", roots=("configuration", "modeling"))
    assert sorted(modules) == ["configuration", "modeling", "ops.bk", "ops.bk.dispatch", "ops.bk.naive",
                               "theory.primes"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "__init__.py").write_text("")
    for module in modules.values():
        (flat / f"{module.flat_name}.py").write_text(remote_code.flat_source(module, modules))
    dispatch = (flat / "ops_bk_dispatch.py").read_text()
    assert "from .ops_bk_naive import double" in dispatch and "def scan(x):\n    return double(x)" in dispatch
    assert "from . import ops_bk_naive as reference  # noqa: F401" in (flat / "ops_bk.py").read_text()
    # everything but the relative import statements is copied unchanged
    original = (tmp_path / "pkg" / "modeling.py").read_text().splitlines()
    rewritten = (flat / "modeling.py").read_text().splitlines()
    assert [a for a in original if "import" not in a] == [b for b in rewritten if "import" not in b]
    modeling = _import_flat(flat, "flat_pkg_for_test")
    try:
        assert modeling.run() == 2 * 3 + 7
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "flat_pkg_for_test"]:
            del sys.modules[name]
    # the flat directory's own closure is itself: saving again from a loaded directory copies it unchanged
    again = remote_code.import_closure(flat, roots=("configuration", "modeling"))
    assert sorted(m.flat_name for m in again.values()) == sorted(m.flat_name for m in modules.values())
    assert all(remote_code.flat_source(m, again) == m.path.read_text() for m in again.values())


def test_absolute_imports_of_the_package_and_flat_name_clashes_are_refused(tmp_path):
    _write(tmp_path / "pkg", {"modeling.py": "from resnet_bk_hf.configuration import ResNetBKConfig\n",
                              "configuration.py": ""})
    with pytest.raises(ValueError, match="absolute import of the package"):
        remote_code.import_closure(tmp_path / "pkg", roots=("configuration", "modeling"))
    _write(tmp_path / "clash", {"modeling.py": "from .a_b import x\nfrom .a.b import y\n", "configuration.py": "",
                                "a_b.py": "x = 1\n", "a/__init__.py": "", "a/b.py": "y = 2\n"})
    with pytest.raises(ValueError, match="would both be saved as a_b.py"):
        remote_code.import_closure(tmp_path / "clash", roots=("configuration", "modeling"))
