"""The layout rules of docs/design.md, checked on the source: every import of the project's packages (module level
and inside functions) is parsed, and the test fails on an import cycle (between modules, or between packages), on
an import that goes up the layers, on a module longer than MAX_LINES, and on a public function or class without a
docstring.

Layers, bottom to top (a module may import its own package and the layers strictly below it):
    icecorr.base  <  fortran_stub, corrector, icecorr.inputs  <  coupling  <  training  <  benchmarks  <  icecorr.cli
`fortran_stub`, `corrector` and `icecorr.inputs` (the user-file input layer) sit side by side and never import each
other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

#: the size limit of one module (lines); above it a module holds more than one idea
MAX_LINES = 400

#: (package prefix, layer); the longest matching prefix decides
LAYERS = {
    "icecorr": 0,  # the namespace package itself (empty)
    "icecorr.base": 0,
    "icecorr.inputs": 1,
    "fortran_stub": 1,
    "corrector": 1,
    "coupling": 2,
    "training": 3,
    "benchmarks": 4,
    "icecorr.cli": 5,
}
PACKAGES = ("icecorr", "fortran_stub", "corrector", "coupling", "training", "benchmarks")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every project module under `root` (generated f90wrap code excluded)."""
    out = {}
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def group_of(module: str) -> str:
    """The layer prefix a module belongs to ('training.fit.loop' -> 'training')."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS")
    return best


def package_of(module: str, modules: dict[str, Path]) -> str:
    """The package a module lives in ('training.fit.loop' -> 'training.fit'; a package is its own)."""
    if modules[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0] or module


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when it exists
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            # the deepest project module named by the import
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != module and (t, node.lineno) not in found:
                found.append((t, node.lineno))
    return found


def import_graph(root: Path) -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    """All project modules and, for each, the project modules it imports (with the line of the import)."""
    modules = module_files(root)
    return modules, {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def module_cycles(root: Path) -> list[list[str]]:
    """Import cycles between modules (function-local imports count)."""
    modules, graph = import_graph(root)
    return cycles({m: {t for t, _ in ts} for m, ts in graph.items()})


def package_cycles(root: Path) -> list[list[str]]:
    """Import cycles between packages (e.g. training.data <-> training.fit)."""
    modules, graph = import_graph(root)
    edges: dict[str, set[str]] = {}
    for m, ts in graph.items():
        pm = package_of(m, modules)
        for t, _ in ts:
            pt = package_of(t, modules)
            # a package's __init__ importing its own modules is not a cycle between packages
            if pt != pm and not pt.startswith(pm + ".") and not pm.startswith(pt + "."):
                edges.setdefault(pm, set()).add(pt)
    return cycles(edges)


def upward_imports(root: Path) -> list[str]:
    """Imports that go up (or sideways across) the layers."""
    modules, graph = import_graph(root)
    bad = []
    for m, ts in graph.items():
        gm = group_of(m)
        for t, line in ts:
            gt = group_of(t)
            if gt != gm and LAYERS[gt] >= LAYERS[gm]:
                bad.append(f"{modules[m].relative_to(root)}:{line}: {m} imports {t} ({gt} is not below {gm})")
    return bad


def defined_names(path: Path) -> set[str]:
    """Names bound at the top level of a module (definitions, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def unresolved_imports(root: Path) -> list[str]:
    """`from project.module import name` where the module neither defines `name` nor has it as a submodule (a
    module that was moved without its importers)."""
    modules = module_files(root)
    out = []
    for m, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module.split(".")[0] not in PACKAGES:
                continue
            if node.module not in modules:
                out.append(f"{path.relative_to(root)}:{node.lineno}: no module {node.module}")
                continue
            names = defined_names(modules[node.module])
            for a in node.names:
                if a.name != "*" and a.name not in names and f"{node.module}.{a.name}" not in modules:
                    out.append(f"{path.relative_to(root)}:{node.lineno}: {node.module} has no {a.name}")
    return out


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    """Modules longer than `limit` lines."""
    out = []
    for m, p in module_files(root).items():
        n = len(p.read_text().splitlines())
        if n > limit:
            out.append(f"{p.relative_to(root)}: {n} lines")
    return out


def missing_docstrings(root: Path) -> list[str]:
    """Public module-level functions and classes, and public methods of public classes, without a docstring."""
    out = []
    for m, p in module_files(root).items():
        tree = ast.parse(p.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    out.append(f"{p.relative_to(root)}:{node.lineno}: {node.name}")
                if isinstance(node, ast.ClassDef):
                    for sub in node.body:
                        if (isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_")
                                and not any(isinstance(d, ast.Name) and d.id in ("property", "staticmethod")
                                            for d in sub.decorator_list)
                                and ast.get_docstring(sub) is None and len(sub.body) > 2):
                            out.append(f"{p.relative_to(root)}:{sub.lineno}: {node.name}.{sub.name}")
    return out


def test_no_import_cycle_between_modules():
    assert module_cycles(REPO) == []


def test_no_import_cycle_between_packages():
    assert package_cycles(REPO) == []


def test_imports_only_go_down_the_layers():
    assert upward_imports(REPO) == []


def test_every_project_import_resolves():
    assert unresolved_imports(REPO) == []


def test_only_the_cli_imports_the_cli():
    modules, graph = import_graph(REPO)
    bad = [f"{m} imports {t}" for m, ts in graph.items() for t, _ in ts
           if group_of(t) == "icecorr.cli" and group_of(m) != "icecorr.cli"]
    assert bad == []


def test_no_module_above_the_size_limit():
    assert long_modules(REPO) == []


def test_public_functions_and_classes_have_docstrings():
    assert missing_docstrings(REPO) == []


# --- the checker itself, on small planted trees --------------------------------------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for top in PACKAGES:
        (tmp_path / top).mkdir(exist_ok=True)
        (tmp_path / top / "__init__.py").touch()
    return tmp_path


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    root = _tree(tmp_path, {"coupling/a.py": "from coupling.b import x\n",
                            "coupling/b.py": "def f():\n    from .a import y\n"})
    assert module_cycles(root) == [["coupling.a", "coupling.b"]]


def test_checker_finds_an_import_of_a_moved_module(tmp_path):
    root = _tree(tmp_path, {"training/evaluation/__init__.py": "", "training/evaluation/plots.py": "x = 1\n",
                            "training/evaluation/ev.py": "def f():\n    from training import plots\n"})
    assert unresolved_imports(root) == ["training/evaluation/ev.py:2: training has no plots"]


def test_checker_finds_an_upward_import(tmp_path):
    root = _tree(tmp_path, {"corrector/a.py": "def f():\n    import training.fit\n",
                            "training/fit.py": ""})
    assert len(upward_imports(root)) == 1 and "corrector.a imports training.fit" in upward_imports(root)[0]


def test_checker_finds_a_sideways_import(tmp_path):
    root = _tree(tmp_path, {"corrector/a.py": "from fortran_stub import config\n", "fortran_stub/config.py": ""})
    assert len(upward_imports(root)) == 1


def test_checker_finds_a_package_cycle(tmp_path):
    root = _tree(tmp_path, {"training/data/__init__.py": "", "training/fit/__init__.py": "",
                            "training/data/a.py": "from training.fit.b import x\n",
                            "training/fit/b.py": "x = 1\n", "training/fit/c.py": "from training.data.d import y\n",
                            "training/data/d.py": "y = 1\n"})
    assert module_cycles(root) == []
    assert package_cycles(root) == [["training.data", "training.fit"]]


def test_checker_finds_a_long_module_and_a_missing_docstring(tmp_path):
    root = _tree(tmp_path, {"coupling/long.py": "x = 1\n" * (MAX_LINES + 1),
                            "coupling/doc.py": 'def documented():\n    """Yes."""\n\n\ndef bare():\n    pass\n'})
    assert long_modules(root) == [f"coupling/long.py: {MAX_LINES + 1} lines"]
    assert missing_docstrings(root) == ["coupling/doc.py:5: bare"]


@pytest.mark.parametrize("module,group", [("icecorr.base.files", "icecorr.base"), ("icecorr.cli.main", "icecorr.cli"),
                                          ("training.fit.loop", "training")])
def test_layers_are_found_by_longest_prefix(module, group):
    assert group_of(module) == group
