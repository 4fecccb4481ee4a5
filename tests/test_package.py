"""The package's shape (docs/ARCHITECTURE.md): imports go one way (no cycle, counting imports inside functions),
no module imports another module's private name, and method names are compared only inside ``mtft_nlp/methods``."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtft_nlp"


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str):
    """(imported module, imported names, line) for every import of a package module in ``name``, at any depth."""
    path = MODULES[name]
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mtft_nlp"):
                    yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here[: len(here) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if not base.startswith("mtft_nlp"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            for s in submodules:
                yield s, [], node.lineno
            others = [n for n in names if f"{base}.{n}" not in MODULES]
            if others:
                yield base, others, node.lineno


def _graph():
    return {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}


def test_the_import_graph_has_no_cycle():
    graph, state, stack, cycles = _graph(), {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{m}:{line} imports {t}.{n}"
        for m in MODULES
        for t, names, line in _imports(m)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", ["tests"])
def test_tests_import_no_private_name(folder):
    bad = []
    for path in sorted((PACKAGE.parent / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtft_nlp"):
                bad += [f"{path.name}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, "\n".join(bad)


def _method_and_kind_names():
    from mtft_nlp.methods import all_methods

    names = set()
    for method in all_methods():
        names.add(method.name)
        names.update(k.name for k in method.kinds)
    return names


def test_method_names_are_compared_only_inside_methods():
    names, bad = _method_and_kind_names(), []
    for m, path in MODULES.items():
        if m.startswith("mtft_nlp.methods"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            for side in [node.left, *node.comparators]:
                consts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                hit = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                if hit:
                    bad.append(f"{m}:{node.lineno} compares with {hit}")
    assert not bad, "\n".join(bad)
