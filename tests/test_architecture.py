"""The package's layering (docs/architecture.md): no import cycle between modules, and no module imports a
higher layer. Imports are read from the source (ast), lazy ones inside functions included."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_bk_hf"

# Lowest first. A module may import its own layer and the layers before it, never a later one.
LAYERS = [
    ("validation",),
    ("ops",),
    ("theory",),
    ("layers",),
    ("configuration", "modeling", "remote_code"),   # remote_code: what save_pretrained writes beside the weights
    ("onnx_export", "optimum_onnx", "model_card", "peft_targets", "monitoring", "tokenization",
     "tokenizer", "data", "training"),
    ("compare",),
    ("demo", "cli", "__init__"),
]
MAX_LINES = 600


def _modules():
    """{dotted name inside the package: path}."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] or ["__init__"]
        found[".".join(parts)] = path
    return found


def _package_of(dotted: str, path: Path) -> list:
    parts = dotted.split(".") if dotted != "__init__" else []
    return parts if path.name == "__init__.py" else parts[:-1]


def _imports(dotted: str, path: Path, modules: dict) -> set:
    """The package's modules that this module imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = _package_of(dotted, path)
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + (node.module.split(".") if node.module else []))
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
            out |= {n for n in names if n in modules}
            if node.module and target in modules:       # `from . import x` imports x, not its package again
                out.add(target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            raw = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out |= {n.split(".", 1)[1] for n in raw if n.startswith("resnet_bk_hf.") and n.split(".", 1)[1] in modules}
    out.discard(dotted)
    return out


def _layer(dotted: str) -> int:
    top = dotted.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module {dotted} is in no layer of tests/test_architecture.py: add it where it belongs")


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {d: _imports(d, p, modules) for d, p in modules.items()}


def test_no_module_imports_a_higher_layer(graph):
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a)]
    assert not upward, upward


def test_no_import_cycle(graph):
    # the package's __init__ re-exports the model classes: importing resnet_bk_hf.x runs it, but no module
    # imports it back, so it is a root, not part of a cycle
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, cycles


def test_the_graph_sees_lazy_and_relative_imports(graph):
    """The checks above would pass vacuously on an empty graph: the known edges must be there."""
    assert "ops.bk.dispatch" in graph["ops.bk"] or any(t.startswith("ops.bk") for t in graph["ops.bk"])
    assert "layers.bk" in graph["layers"] and "remote_code" in graph["modeling"]   # modeling's lazy import


def test_package_files_stay_small():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (one job per file): {long}"


# Triton kernel bodies that cannot be split without cost: a @triton.jit helper call is inlined, but splitting the
# persistent main backward pass would split the scratch-slot walk that its two loops share (docs/architecture.md).
LONG_KERNELS = {"ops/bk/triton/backward.py:_bwd_main_seq_kernel"}


def test_functions_stay_short():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                name = f"{path.relative_to(PACKAGE)}:{node.name}"
                if name not in LONG_KERNELS:
                    long.append(name)
    assert not long, f"functions over 80 lines: {long}"
