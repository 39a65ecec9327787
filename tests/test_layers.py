"""The package's two layers: the core never imports the lab, and no module imports itself in a circle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skinseg"
# The command line may call the lab: it runs its commands.
ENTRY_POINTS = {"skinseg.cli", "skinseg.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The skinseg modules ``path`` imports (at any depth of the file, deferred imports included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imported_modules(path, modules) for name, path in paths.items()}


def test_the_core_never_imports_the_lab():
    graph = import_graph()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                   if not m.startswith("skinseg.lab") and m not in ENTRY_POINTS and t.startswith("skinseg.lab"))
    assert graph["skinseg.lab.experiment"], "the graph found no imports: the walk is broken"
    assert not wrong, wrong


def test_there_is_no_import_cycle():
    graph = import_graph()
    # a package's __init__ importing its own modules is not a cycle of the design
    edges = {m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_package_docstrings_name_every_module_of_their_layer():
    import skinseg
    import skinseg.lab

    for package, docstring in ((PACKAGE, skinseg.__doc__), (PACKAGE / "lab", skinseg.lab.__doc__)):
        names = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__", "cli_args")}
        names |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file() and p.name != "lab"}
        missing = sorted(n for n in names if f".{n}`" not in docstring)
        assert not missing, f"{package.name}/__init__.py does not name {missing}"


def test_the_walk_sees_a_cycle_and_a_wrong_way_import(tmp_path, monkeypatch):
    package = tmp_path / "skinseg"
    (package / "lab").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "lab" / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .lab import b\n")
    (package / "lab" / "b.py").write_text("from ..a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    graph = import_graph()
    assert graph["skinseg.a"] == {"skinseg.lab", "skinseg.lab.b"} and graph["skinseg.lab.b"] == {"skinseg.a"}


def test_the_core_imports_without_fcntl():
    """filelock, not fcntl: the training loop and the data readers import on Windows too."""
    code = "import sys; sys.modules['fcntl'] = None; import skinseg.train, skinseg.data, skinseg.lock, skinseg.cli"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
