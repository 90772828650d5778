"""The package's layout rules: layers import only downwards, no import cycles, one home for output names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cor2vox_bids"

#: rank of each top-level module/package: a module may import modules of a lower rank (or of its own package)
LAYERS = {
    "__init__": 0,
    "errors": 0,
    "settings": 1,
    "geometry": 2,
    "diffusion": 2,
    "bids": 3,
    "qc": 3,
    "demodata": 3,
    "reports": 4,
    "shape": 4,
    "interfaces": 5,
    "workflows": 6,
    "execution": 7,
    "cli": 8,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every cor2vox_bids module ``path`` imports (module level and inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = set(module_name(p) for p in PACKAGE.rglob("*.py"))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cor2vox_bids")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("cor2vox_bids"):
                continue
            for alias in node.names:  # "from . import naming" imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a list of modules, first = last) or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_relative_and_late_imports():
    graph = import_graph()
    assert "cor2vox_bids.bids.naming" in graph["cor2vox_bids.interfaces.derivatives"]
    assert "cor2vox_bids.execution.group" in graph["cor2vox_bids.cli.run"]  # imported inside a function


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_every_module_has_a_layer():
    unknown = sorted({_top(m) for m in import_graph()} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS in {__file__} (and to docs/architecture.md)"


#: upward imports written by other work after the layout change, each with where its target should live; the
#: test below fails when one disappears, so the entry is removed with the fix
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def upward_imports() -> set[tuple[str, str]]:
    bad = set()
    for module, targets in import_graph().items():
        own = _top(module)
        for target in targets:
            other = _top(target)
            if other != own and LAYERS.get(other, 99) >= LAYERS.get(own, -1) and other not in ("__init__", "errors"):
                bad.add((module, target))
    return bad


def test_imports_point_down_the_stack():
    bad = sorted(upward_imports() - set(KNOWN_UPWARD))
    assert not bad, "upward or sideways imports:\n" + "\n".join(f"{a} → {b}" for a, b in bad)


def test_known_upward_imports_still_exist():
    fixed = sorted(set(KNOWN_UPWARD) - upward_imports())
    assert not fixed, f"fixed, remove from KNOWN_UPWARD: {fixed}"


# -- output names -------------------------------------------------------------------------------------------
#: pieces of output file names; only bids/naming.py spells them (bids/inputs.py spells the *input* layout,
#: demodata.py builds an input dataset)
NAME_PIECES = re.compile(r"_desc-|desc-\{|\.nii\.gz|_T1w\b|crash-|\.html\b|_hemi-|/log/|/figures")
NAME_HOMES = {"bids/naming.py", "bids/inputs.py", "demodata.py"}
#: (file, literal) pairs written by work in flight when the layout changed (issues 17 and 18); each should move to
#: bids/naming.py (outputs) or bids/inputs.py (the sMRIPrep sphere input) — delete the entry when it has
PENDING = {
    ("cli/shape.py", "cor2vox-shape-crash-"),
    ("interfaces/atrophy.py", "seedstd.nii.gz"),
    ("shape/data.py", "_hemi-"),
    ("shape/data.py", "_desc-reg_sphere.surf.gii"),
}


def _strings(tree: ast.AST):
    """String constants of a module (f-string pieces included), docstrings left out."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def output_name_literals(root: Path = PACKAGE) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in NAME_HOMES:
            continue
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            # a name or a piece of one has no whitespace; prose (help text, messages) that mentions a name is fine
            if NAME_PIECES.search(text) and not re.search(r"\s", text) and (rel, text) not in PENDING:
                hits.append(f"{rel}:{line}: {text!r}")
    return hits


def test_output_names_are_built_only_in_bids_naming():
    hits = output_name_literals()
    assert not hits, "build these names in cor2vox_bids/bids/naming.py:\n" + "\n".join(hits)


def test_name_check_catches_a_name_built_elsewhere(tmp_path):
    (tmp_path / "bad.py").write_text(
        '"""desc-synth in a docstring is fine."""\ndef f(sub):\n    return f"sub-{sub}_desc-synth_T1w.nii.gz"\n'
    )
    (tmp_path / "good.py").write_text(
        'X = "hemi-L: image − surface thickness (mm)"\nY = "logs go to OUT/log/<run-id>/"\n'
    )
    assert [h.split(":")[0] for h in output_name_literals(tmp_path)] == ["bad.py"]


@pytest.mark.parametrize(
    "entities,expected",
    [
        (
            {"desc": "thicknesserror", "hemi": "L"},
            "sub-01/figures/sub-01_hemi-L_desc-thicknesserror_qc.png",
        ),
        ({"desc": "bars"}, "sub-01/figures/sub-01_desc-bars_qc.png"),
    ],
)
def test_figure_names_use_the_hemi_entity(entities, expected):
    from cor2vox_bids.bids import naming

    assert naming.figure_path("01", None, entities["desc"], "qc", entities.get("hemi")) == expected
