"""The layout (issue 10): no import circle between the project's modules, no file over about
700 lines and no function over about 80 in nh_data/ or nh_models/, nh_data never imports torch,
one home for the problem's constants (SPEC section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nh_data", "nh_models")
MAX_LINES = 700
#: a function longer than this (def to last line, nested functions included) does several jobs
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the two packages (a package: its __init__)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that `name` imports anywhere in its file (lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()

    def add(target: str) -> None:
        if target in modules:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                mod = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            else:
                mod = node.module or ""
            for alias in node.names:  # `from pkg import sub` imports the submodule
                if f"{mod}.{alias.name}" in modules:
                    add(f"{mod}.{alias.name}")
                else:
                    add(mod)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_sees_relative_and_lazy_imports():
    graph = _graph()
    assert "nh_data.physics.analytic_potentials" in graph["nh_data.physics.orbits"]  # from .analytic_potentials
    assert "nh_models.evaluation.plots" in graph["nh_models.evaluation.eval_command"]  # from . import plots (lazy)
    assert "nh_models.training.checkpoint" in graph["nh_models.evaluation.eval_command"]  # from ..training...


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_file_over_the_limit(pkg):
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_function_over_the_limit(pkg):
    """No allow-list: split a long function into named phases (for a Numba kernel, @njit helpers
    with bit-identical results)."""
    long = {}
    for path in sorted((ROOT / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_schema_table_of_the_docs_is_the_one_of_schema_py():
    """docs/data.md's column table is rendered from nh_data/schema.py (SCHEMA, COLUMN_MEANINGS),
    which lists every column once, in schema order."""
    from nh_data import schema

    assert [n for names, _ in schema.COLUMN_MEANINGS for n in names] == schema.SCHEMA.names
    text = (ROOT / "docs" / "data.md").read_text()
    start, end = "<!-- schema:columns start -->\n", "\n<!-- schema:columns end -->"
    block = text[text.index(start) + len(start) : text.index(end)]
    assert block == schema.columns_markdown(), "docs/data.md: paste nh_data.schema.columns_markdown() there"


def test_nh_data_never_imports_torch():
    for path in sorted((ROOT / "nh_data").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path


def test_the_problem_is_stated_once():
    """Every module that exposes a constant of SPEC section 1 exposes the one of nh_data.problem."""
    import nh_data.initial
    import nh_data.physics
    import nh_data.random_potentials
    import nh_data.schema
    import nh_data.validate
    from nh_data import problem

    assert (problem.V0, problem.L, problem.T_END, problem.N_SENSORS, problem.WINDOW) == (2.0, 1.0, 2.0, 100, 100)
    assert np.array_equal(problem.SENSORS, np.linspace(0, 1, 100))
    assert nh_data.random_potentials.SENSORS is problem.SENSORS and nh_data.validate.SENSORS is problem.SENSORS
    assert nh_data.random_potentials.V0 is problem.V0 and nh_data.physics.V0 is problem.V0
    assert nh_data.initial.T_END is problem.T_END and nh_data.initial.WINDOW is problem.WINDOW
    assert nh_data.schema.WINDOW is problem.WINDOW and nh_data.schema.N_SENSORS is problem.N_SENSORS
    # and nowhere else is one of them assigned
    pattern_names = {"V0", "N_SENSORS", "SENSORS", "T_END", "WINDOW"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "nh_data" / "problem.py":
                continue
            for node in ast.parse(path.read_text(), str(path)).body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                for t in targets:
                    assert not (isinstance(t, ast.Name) and t.id in pattern_names), f"{path}: {t.id} defined again"


# Literals equal to a constant of nh_data.problem that are something else (a count, a cap,
# a percentage, a member of a grid of steps): (file, the line's text). Any other int 100 or
# float 0.02 in the packages or cli.py is the constant written out: import it instead.
LITERAL_ALLOWED = {
    ("nh_data/adaptive.py", "return min(100.0 * h0, h1, span)"),
    ("nh_data/physics/orbits.py", "for _ in range(100):"),
    ("nh_data/progress.py", 'done = f"{self.n:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.n / self.total:.0f} %)" if self.total \\'),
    ("nh_models/demo.py", "n_detj: int = 100"),
    ("nh_models/demo.py", "dts: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)"),
    ("nh_models/demo.py", "dts=(0.1, 0.05, 0.02),"),
    ("nh_models/evaluation/cost_table.py", "for n in (25, 100):"),
    ("nh_models/evaluation/cost_table.py", "per_step = (times[100] - times[25]) / 75"),
    ("nh_models/evaluation/cost_table.py", "n = max(1, int(round((target_us - fixed) / per_step))) if per_step > 0 else 100"),
    ("nh_models/evaluation/settings.py", "dts: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)"),
    ("nh_models/training/config.py", '"batch_size": 100,'),
    ("nh_models/training/guard.py", "EXPLODE_FACTOR = 100.0  # a median batch loss this many times the first one stops the run"),
}
CONSTANT_LITERALS = (100, 0.02)  # N_SENSORS and WINDOW; PHYSICS_DT (T_END = 2.0 is too common a number to scan for)


def _constant_literals() -> set[tuple[str, str]]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))] + [ROOT / "cli.py"]
    found = set()
    for path in files:
        if path == ROOT / "nh_data" / "problem.py":
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in CONSTANT_LITERALS:
                found.add((str(path.relative_to(ROOT)), lines[node.lineno - 1].strip()))
    return found


def test_the_problem_constants_are_imported_not_written_out():
    stray = _constant_literals() - LITERAL_ALLOWED
    assert not stray, f"a literal equal to a constant of nh_data.problem (import it, or allow it here): {sorted(stray)}"


def test_the_literal_allow_list_is_current():
    """Every allowed literal is still found: the scan sees the files, and the list holds no stale entry."""
    stale = LITERAL_ALLOWED - _constant_literals()
    assert not stale, f"allowed literals no longer in the code (drop them from LITERAL_ALLOWED): {sorted(stale)}"
