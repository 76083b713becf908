"""The package's shape: no import circle among `notagen/` modules, short files, short functions.

The import graph is read from the source (`ast`), every `import` and `from ... import` counted,
function-local ones included (a circle closed inside a function still ties two modules together).
Importing `a.b.c` runs the packages `a` and `a.b` first, so an edge to a module is also an edge to
its packages (not to the importer's own packages: a package importing its submodules is no circle).
Names that a package loads lazily by string (`notagen._lazy`) are not edges.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "notagen"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement anywhere in the module may load (absolute)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, one level up per extra dot
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, for every .py file under root/package."""
    files = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph = {}
    for module, path in files.items():
        edges = set()
        for name in imported_names(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"):
            if name not in files:
                continue
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                own_package = module == target or module.startswith(target + ".")
                if target in files and not own_package:
                    edges.add(target)
        graph[module] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_sees_relative_absolute_and_function_local_imports(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "def f():\n    from .sub import b\n",  # a -> pkg.sub.b (and the package pkg.sub)
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from .. import c\n",  # b -> pkg.c
        "pkg/c.py": "import pkg.sub.d\n",  # c -> pkg.sub.d, pkg.sub (pkg is its own package)
        "pkg/sub/d.py": "import json\nfrom pkg.a import f\n",  # d -> pkg.a; json is not the package's
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub", "pkg.sub.b"}, "pkg.sub": set(),
                     "pkg.sub.b": {"pkg.c"}, "pkg.c": {"pkg.sub", "pkg.sub.d"}, "pkg.sub.d": {"pkg.a"}}
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b", "pkg.sub.d"]]
    (tmp_path / "pkg" / "sub" / "d.py").write_text("import json\n")  # the circle opened
    assert circles(import_graph(tmp_path, "pkg")) == []


def test_no_import_circle_in_the_package():
    found = circles(import_graph(REPO_ROOT, "notagen"))
    assert found == [], f"modules that import each other (function-local imports included): {found}"


def test_files_and_functions_are_short():
    long_files, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        name, text = path.relative_to(REPO_ROOT).as_posix(), path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{name}: {len(text.splitlines())} lines")
        long_functions += [f"{name}: {node.name}, {node.end_lineno - node.lineno + 1} lines"
                           for node in ast.walk(ast.parse(text))
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long_files == [] and long_functions == [], long_files + long_functions
