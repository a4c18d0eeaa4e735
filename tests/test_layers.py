"""The layer rule (docs/architecture.md), read from the code's own import statements.

floor (``training.core``: imports nothing of ours above it) -> ``training`` and ``analysis``
(``analysis`` imports no other package of ours) -> ``fingerprint`` on top. An import inside a
function counts (deferring an import does not remove the dependency), and a deferred import of
our own code must say why on its line (start-up time), not dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "analysis", "fingerprint")
# what each layer may import, by module prefix (a module may always import its own package)
ALLOWED = {
    "training.core": ("training.core",),
    "training": ("training",),
    "analysis": ("analysis",),
    "fingerprint": ("fingerprint", "training", "analysis"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            found[".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")] = f
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    return "training.core" if module == "training.core" or module.startswith("training.core.") else module.split(".")[0]


def _imports(module: str, path: Path) -> list[tuple[str, int, bool, str]]:
    """``(imported module of ours, line, deferred?, source line)`` for each import statement."""
    src = path.read_text()
    tree, lines = ast.parse(src), src.splitlines()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(n) for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
           for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.append((name, node.lineno, id(node) not in top, lines[node.lineno - 1]))
    return out


EDGES = {m: _imports(m, p) for m, p in MODULES.items()}


def test_each_layer_imports_only_what_is_below_it():
    bad = [f"{m}:{line} imports {target}" for m, edges in EDGES.items() for target, line, _, _ in edges
           if not target.startswith(ALLOWED[_layer(m)]) and not any(target == a or target.startswith(a + ".")
                                                                   for a in ALLOWED[_layer(m)])]
    assert not bad, "layer rule broken (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle_between_modules():
    """Strongly connected components of the module graph (function-level imports included); a
    package's ``__init__`` re-exporting its own modules is not a cycle."""
    graph = {m: {t for t, *_ in edges if MODULES[t].name != "__init__.py"} for m, edges in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in graph:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_deferred_imports_of_our_code_say_why():
    """An import of our own code inside a function is for start-up time (it says so), never a dodged cycle."""
    bad = [f"{m}:{line}: {src.strip()}" for m, edges in EDGES.items() for _, line, deferred, src in edges
           if deferred and "deferred" not in src and "start-up" not in src]
    assert not bad, "function-level imports without a reason:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small_or_say_why(module):
    """No module over ~400 lines without a reason stated at its top ("Longer than ...")."""
    text = MODULES[module].read_text()
    n = text.count("\n")
    assert n <= 420 or "Longer than" in text[:3000], f"{module} has {n} lines and no reason at its top"


def test_test_modules_have_unique_names():
    """pytest imports test modules by basename (no packages under tests/): two test_x.py in different
    folders stop the whole suite at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
