"""The package's shape: no import cycle, no module over ~500 lines, stages import only earlier ones.

The imports are read from the source (AST), not by importing: every ``import`` and
``from ... import`` anywhere in a module counts, including those inside functions (a function-level
import hides a cycle rather than removing it). Imports under ``if TYPE_CHECKING:`` never run and
are left out: they only name types for annotations.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mri_scoring"
MAX_LINES = 500
# Modules allowed past MAX_LINES for now, each with the cap it must not grow beyond and why.
OVERSIZE: dict[str, tuple[int, str]] = {}
# Stages in data-flow order: a module of a stage may import its own or earlier stages only.
STAGES = ["io", "measure", "grading", "pattern", "output", "batch", "pipeline", "cli"]
# Later-stage imports allowed, each with its reason.
ALLOWED_LATE = {
    ("mri_scoring.io.dicom", "mri_scoring.measure"): "DICOM conversion fits the MESE T2 map",
    ("mri_scoring.io.dicom", "mri_scoring.measure.t2fit"): "DICOM conversion fits the MESE T2 map",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement except those in the body of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _with_parents(name: str, modules: dict[str, Path]) -> set[str]:
    """``a.b.c`` and the packages importing it runs first (``a``, ``a.b``), those in the package."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports at run time (relative imports resolved)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    base = base if is_package else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # "from pkg import sub" imports the submodule when there is one.
                targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
            for target in targets:
                edges |= _with_parents(target, modules)
        edges.discard(name)
        graph[name] = edges - _with_parents(name, modules)  # a module's own packages run first
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_function_level_cycle():
    """Guards against a checker that cannot fail: a planted two-module cycle is reported."""
    assert find_cycle({"a": {"b"}, "b": {"a"}, "c": set()}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    tree = ast.parse("def f():\n    from . import x\nif TYPE_CHECKING:\n    import y\n")
    assert [type(n).__name__ for n in _runtime_imports(tree)] == ["ImportFrom"]


def test_the_graph_resolves_relative_and_function_level_imports():
    """A wrong resolver would find no edges and pass every cycle check: known edges must be
    there (pipeline imports the loader at module level, StudyResult.save the writer inside
    a method)."""
    graph = import_graph()
    assert "mri_scoring.io.study" in graph["mri_scoring.pipeline"]
    assert "mri_scoring.output.write" in graph["mri_scoring.output.result"]
    assert "mri_scoring.memory_layout" in graph["mri_scoring.io.nifti"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_over_500_lines(name):
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    cap, why = OVERSIZE.get(name, (MAX_LINES, ""))
    assert lines <= cap, (
        f"{name} has {lines} lines (limit {cap}{': ' + why if why else ''}): split it by job"
    )


def _stage(name: str) -> int | None:
    parts = name.split(".")
    room = parts[1] if len(parts) > 1 else ""
    return STAGES.index(room) if room in STAGES else None


def test_a_stage_imports_no_later_stage():
    """io never imports measurement, measurement never imports pattern or output, and so on.

    ``StudyResult.save`` (output.result) calls the writer of its own room, which the stage
    order allows; the exceptions across rooms are listed, with reasons, in ``ALLOWED_LATE``.
    """
    late = []
    for name, edges in import_graph().items():
        here = _stage(name)
        if here is None:
            continue
        late += [
            f"{name} -> {t}"
            for t in sorted(edges)
            if (_stage(t) or 0) > here and (name, t) not in ALLOWED_LATE
        ]
    assert not late, "stages import later stages: " + "; ".join(late)


ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _children(package: Path) -> list[str]:
    """Modules and subpackages directly in a package folder (``__init__.py`` aside)."""
    modules = [p.stem for p in package.glob("*.py") if p.name != "__init__.py"]
    return sorted(modules + [p.name for p in package.iterdir() if (p / "__init__.py").exists()])


def unlisted(package: Path, docstring: str) -> list[str]:
    """The package's modules its ``__init__`` docstring does not name (as ``.x``/``x`` in ``)."""
    return [m for m in _children(package) if not re.search(rf"[`.~]{re.escape(m)}`", docstring)]


def undocumented(text: str) -> list[str]:
    """Package modules whose path (``io/nifti.py``) is not in backticks in the text."""
    paths = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")]
    return sorted(p for p in paths if not p.endswith("__init__.py") and f"`{p}`" not in text)


def test_every_package_lists_its_modules():
    missing = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        missing += [f"{init.parent.name}/{m}" for m in unlisted(init.parent, docstring)]
    assert not missing, "modules missing from their package's __init__ docstring: " + str(missing)
    # the check fails on a module missing from the list
    assert unlisted(PACKAGE / "measure", "* :mod:`.masks`") != []


def test_architecture_lists_every_module():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert undocumented(text) == [], "add them to docs/architecture.md's module table"
    assert undocumented(text.replace("`measure/fat.py`", "")) == ["measure/fat.py"]


def test_no_two_modules_share_a_file_name():
    names: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(path.relative_to(PACKAGE).as_posix())
    assert {n: p for n, p in names.items() if len(p) > 1} == {}


def test_every_public_module_declares_all():
    """Each module (not ``_private``) has ``__all__``, naming only what it defines or imports."""
    wrong = []
    for name, path in _modules().items():
        if path.name.startswith("_") and path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {
            name.id
            for node in ast.walk(tree)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            for name in (target.elts if isinstance(target, ast.Tuple) else [target])
            if isinstance(name, ast.Name)
        }
        if "__all__" not in bound:
            if path.name != "__init__.py" or name == "mri_scoring":
                wrong.append(f"{name}: no __all__")
            continue
        if name == "mri_scoring":
            continue  # the root's names are imported on first use (its __getattr__)
        defined = {getattr(n, "name", None) for n in tree.body} | bound
        defined |= {
            a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names
        }
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(getattr(t, "id", "") == "__all__" for t in node.targets)
                and isinstance(node.value, (ast.List, ast.Tuple))
            ):
                wrong += [
                    f"{name}: {e.value}"
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and e.value not in defined
                ]
    assert not wrong, wrong
