"""Hub-ready model directories: the model's code and `auto_map`, for `trust_remote_code=True`.

`ResNetBKPreTrainedModel.save_pretrained` calls `set_auto_map` and `write_remote_code`, so every saved
directory carries the code that builds the model and loads where this package is not installed:

    AutoModelForCausalLM.from_pretrained(DIR_OR_HUB_ID, trust_remote_code=True)

Which files: the import closure of `modeling.py` and `configuration.py`, computed by reading their relative
imports (`ast`), and theirs, and so on (lazy imports inside functions included). Nothing here names a file
of the package, so moving or splitting a module needs no change here.

Why the files are renamed: transformers' dynamic-module loader (`transformers.dynamic_module_utils`) resolves
a relative import `from .x import y` to the file `x.py` beside the importing file, so a saved directory must
be flat. Each module gets the flat name of its dotted path (`ops/bk/dispatch.py` -> `ops_bk_dispatch.py`,
a package's `__init__.py` the name of the package: `ops/bk/__init__.py` -> `ops_bk.py`), and every relative
import statement is regenerated from its parsed form to name the flat module (`from ..naive import State`
in `ops/bk/triton/function.py` becomes `from .ops_bk_naive import State`). Only import statements change,
and only relative ones; the rest of each file is copied byte for byte.

The entry point named in `auto_map` (for the config too) is a generated file, `modeling_resnet_bk.py`, that
imports every other file directly: transformers 4.57 copies only the *direct* relative imports of that file into
its module cache when it loads a local directory (5.x follows them recursively), so a class named through any
other file would miss the files its imports import. Modules that need Triton are imported
there inside `try`, so a directory loads on machines without Triton (the dispatcher then uses the CPU scan).
transformers' `check_imports`, which vets every remote file, skips imports inside `try` blocks; the one
module that imports Triton keeps its import in such a block for that reason.

The same code runs from a saved directory (a model loaded with trust_remote_code and saved again): the
closure is then computed over the flat files, whose names are already flat, so they are copied unchanged.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent

# The modules whose closure a saved directory needs (the classes named in AUTO_MAP live in them).
ROOT_MODULES = ("configuration", "modeling")
ENTRY_POINT = "modeling_resnet_bk.py"
AUTO_MAP = {
    "AutoConfig": "modeling_resnet_bk.ResNetBKConfig",
    "AutoModel": "modeling_resnet_bk.ResNetBKModel",
    "AutoModelForCausalLM": "modeling_resnet_bk.ResNetBKForCausalLM",
    "AutoModelForSequenceClassification": "modeling_resnet_bk.ResNetBKForSequenceClassification",
}
# Third-party packages a saved directory may need only optionally (imported inside `try` in the entry point).
OPTIONAL_PACKAGES = ("triton",)


@dataclass
class SourceModule:
    dotted: str           # path inside the package, dotted: "ops.bk.dispatch"; a package's __init__: "ops.bk"
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def flat_name(self) -> str:
        return self.dotted.replace(".", "_")


def _join(package: str, name: str) -> str:
    return f"{package}.{name}" if package else name


def _module_path(root: Path, dotted: str) -> Optional[Path]:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolve(module: SourceModule, node: ast.ImportFrom) -> str:
    """The dotted name (inside the package) that a relative `from ... import` names."""
    parts = module.dotted.split(".") if module.dotted else []
    if not module.is_package:
        parts = parts[:-1]                     # a module's `.` is its package
    up = node.level - 1
    if up > len(parts):
        raise ValueError(f"{module.path}: `{ast.unparse(node)}` goes above the package root")
    parts = parts[:len(parts) - up] if up else parts
    if node.module:
        parts = parts + node.module.split(".")
    return ".".join(parts)


def _relative_imports(module: SourceModule):
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            yield node
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == HERE.name for a in node.names):
            raise ValueError(f"{module.path}:{node.lineno}: an absolute import of the package cannot travel "
                             "with a saved model; import relatively")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == HERE.name:
            raise ValueError(f"{module.path}:{node.lineno}: an absolute import of the package cannot travel "
                             "with a saved model; import relatively")


def _load(root: Path, dotted: str) -> SourceModule:
    path = _module_path(root, dotted)
    if path is None:
        raise FileNotFoundError(f"module {dotted!r} not found under {root}")
    return SourceModule(dotted, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def import_closure(root: Path = HERE, roots=ROOT_MODULES) -> Dict[str, SourceModule]:
    """Every module under `root` that the `roots` import, directly or not: {dotted name: module}."""
    found: Dict[str, SourceModule] = {}
    todo = list(roots)
    while todo:
        dotted = todo.pop()
        if dotted in found:
            continue
        module = found[dotted] = _load(root, dotted)
        for node in _relative_imports(module):
            target = _resolve(module, node)
            if node.module:                    # `from . import x` imports x alone, not the package around it
                todo.append(target)
            for alias in node.names:           # `from . import triton`: the names may be submodules
                if _module_path(root, _join(target, alias.name)) is not None:
                    todo.append(_join(target, alias.name))
    flat = {}
    for module in found.values():
        if module.flat_name in flat:
            raise ValueError(f"{module.path} and {flat[module.flat_name]} would both be saved as "
                             f"{module.flat_name}.py: rename one")
        flat[module.flat_name] = module.path
    return found


def _flat_import(module: SourceModule, node: ast.ImportFrom, modules: Dict[str, SourceModule]) -> str:
    """The import statement `node` rewritten for the flat directory."""
    target = _resolve(module, node)
    submodules = [a for a in node.names if _join(target, a.name) in modules]
    if submodules and len(submodules) != len(node.names):
        raise ValueError(f"{module.path}:{node.lineno}: `{ast.unparse(node)}` mixes submodules and names; "
                         "split it into two imports")
    if submodules:   # from . import x as y -> from . import <flat x> as y
        flat = {a.name: modules[_join(target, a.name)].flat_name for a in node.names}
        names = [ast.alias(name=flat[a.name], asname=a.asname or (a.name if flat[a.name] != a.name else None))
                 for a in node.names]
        return ast.unparse(ast.ImportFrom(module=None, names=names, level=1))
    return ast.unparse(ast.ImportFrom(module=modules[target].flat_name, names=node.names, level=1))


def flat_source(module: SourceModule, modules: Dict[str, SourceModule]) -> str:
    """The module's text with each relative import statement replaced by its flat form (same indentation)."""
    lines = module.path.read_text(encoding="utf-8").splitlines(keepends=True)
    edits: List[Tuple[int, int, str]] = []
    for node in _relative_imports(module):
        first, last = node.lineno - 1, node.end_lineno - 1
        before, after = lines[first][:node.col_offset], lines[last][node.end_col_offset:]
        if before.strip() or after.strip() not in ("", "\\") and not after.strip().startswith("#"):
            raise ValueError(f"{module.path}:{node.lineno}: put `{ast.unparse(node)}` on lines of its own")
        newline = "\n" if lines[last].endswith("\n") else ""
        edits.append((first, last, before + _flat_import(module, node, modules) + after.rstrip("\n") + newline))
    for first, last, text in sorted(edits, reverse=True):
        lines[first:last + 1] = [text]
    return "".join(lines)


def _imports_optional_package(module: SourceModule) -> bool:
    for node in ast.walk(module.tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        if any(n.split(".")[0] in OPTIONAL_PACKAGES for n in names):
            return True
    return False


def _optional_modules(modules: Dict[str, SourceModule]) -> set:
    """Modules that import an optional package, and every module that imports one of those at its top level."""
    optional = {d for d, m in modules.items() if _imports_optional_package(m)}
    changed = True
    while changed:
        changed = False
        for dotted, module in modules.items():
            if dotted in optional:
                continue
            top_level = [n for n in module.tree.body if isinstance(n, ast.ImportFrom) and n.level > 0]
            targets = {_resolve(module, n) for n in top_level}
            targets |= {_join(_resolve(module, n), a.name) for n in top_level for a in n.names}
            if targets & optional:
                optional.add(dotted)
                changed = True
    return optional


def _a_top_level_name(module: SourceModule) -> str:
    """A name the module defines at its top level (a public one where there is one): the entry point imports
    it, since transformers finds the files to copy by the pattern `from .x import name` (a bare
    `from . import x` is not seen)."""
    defined, imported = [], []
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.append(node.name)
        elif isinstance(node, ast.Assign):
            defined += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":   # a package that re-exports
            imported += [a.asname or a.name for a in node.names if a.name != "*"]
    for name in sorted(defined + imported, key=lambda n: (n.startswith("_"), n not in defined)):
        return name
    raise ValueError(f"{module.path} defines no name for the saved directory's entry point to import")


def entry_point_source(modules: Dict[str, SourceModule]) -> str:
    optional = _optional_modules(modules)
    lines = ['"""ResNet-BK for `trust_remote_code=True`; the model is in modeling.py.',
             "",
             "Written by remote_code.py. Every code file of the directory is imported here directly: transformers 4.57",
             "copies only the direct relative imports of the `auto_map` module when it loads a local directory.",
             '"""']
    lines += [f"from .{m.flat_name} import {_a_top_level_name(m)}  # noqa: F401"
              for d, m in sorted(modules.items(), key=lambda item: item[1].flat_name) if d not in optional]
    lines.append("from .configuration import ResNetBKConfig  # noqa: F401")
    lines.append("from .modeling import ResNetBKForCausalLM, ResNetBKForSequenceClassification, ResNetBKModel  # noqa: F401")
    for module in sorted((modules[d] for d in optional), key=lambda m: m.flat_name):
        lines += ["", "try:  # needs Triton (and a GPU to be used); without it the CPU scan runs",
                  f"    from .{module.flat_name} import {_a_top_level_name(module)}  # noqa: F401",
                  "except ImportError:", "    pass"]
    return "\n".join(lines) + "\n"


def set_auto_map(config) -> None:
    config.auto_map = dict(AUTO_MAP)


def write_remote_code(save_directory) -> List[Path]:
    """Write the model's code, flat, into `save_directory`. Returns the written paths."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    modules = import_closure()
    written = []
    for module in modules.values():
        target = out / f"{module.flat_name}.py"
        text = flat_source(module, modules)
        if not (target.is_file() and target.resolve() == module.path.resolve()):
            target.write_text(text, encoding="utf-8")
        written.append(target)
    (out / ENTRY_POINT).write_text(entry_point_source(modules), encoding="utf-8")
    written.append(out / ENTRY_POINT)
    return sorted(written)
