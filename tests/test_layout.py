"""The package's architecture as rules: which subpackage may import which, no import circle, and
the size limits a reader can hold in their head. Each subpackage's ``__init__`` docstring states
its rule in words; ``ALLOWED`` is the same rule as data."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "streaming_lstm"

# subpackage -> the subpackages it may import (besides itself). ``commands`` may import anything.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "local": {"core"},
    "spark": {"core", "local"},
    "storage": {"core"},
    "kafka": {"core", "spark"},
    "parse": {"core", "storage"},
    "trainer": {"core", "storage", "parse", "kafka", "spark"},
    "producers": {"core", "parse", "kafka"},
    "testing": {"core", "storage", "parse", "kafka", "spark", "trainer", "local"},
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
MAX_TOP_MODULES = 10


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for streaming_lstm and producers."""
    out = {}
    for base in (PKG, ROOT / "producers"):
        for path in base.rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, at any depth (lazy imports count: they are arrows too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(p, known) - {m} for m, p in mods.items()}


def _group(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "producers":
        return "producers"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PKG / parts[1]).is_dir()) else "top"


def test_subpackages_import_only_what_their_docstring_allows() -> None:
    bad = []
    for mod, deps in _graph().items():
        group = _group(mod)
        if group in ("commands", "top"):
            continue
        for dep in deps:
            target = _group(dep)
            if target in (group, "top") and not dep.endswith(".commands"):
                if target == "top" and dep != "streaming_lstm":
                    bad.append(f"{mod} -> {dep}")
                continue
            if target not in ALLOWED[group]:
                bad.append(f"{mod} -> {dep} ({group} may import {sorted(ALLOWED[group]) or 'nothing'})")
    assert not bad, "\n".join(sorted(bad))


def test_nothing_in_production_imports_commands_or_testing() -> None:
    bad = [
        f"{mod} -> {dep}"
        for mod, deps in _graph().items()
        for dep in deps
        if _group(dep) in ("commands", "testing") and _group(mod) not in ("commands", "testing") and mod != "streaming_lstm.cli"
    ]
    assert not bad, bad


def test_there_is_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.rpartition(".")[0] == node or node.startswith(dep + "."):
                continue  # a package and its own modules
            if state.get(dep) == 1:
                circles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_core_imports_neither_spark_nor_kafka() -> None:
    bad = []
    for path in (PKG / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad += [f"{path.name}: {m}" for m in mods if re.match(r"(pyspark|kafka)(\.|$)", m)]
    assert not bad, bad


def test_at_most_ten_modules_directly_under_the_package() -> None:
    top = [p.name for p in PKG.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP_MODULES, top


def test_every_subpackage_says_what_lives_there_and_what_it_may_import() -> None:
    for init in [*PKG.glob("*/__init__.py"), ROOT / "producers" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init.relative_to(ROOT)}: the docstring must say what it may import"


def _long_functions() -> list[str]:
    out = []
    for base in (PKG, ROOT / "producers"):
        for path in sorted(base.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_functions_fit_in_a_readers_head() -> None:
    assert not _long_functions(), "\n".join(_long_functions())


def test_modules_stay_under_the_size_limit() -> None:
    big = []
    for base in (PKG, ROOT / "producers"):
        for path in base.rglob("*.py"):
            n = path.read_text().count("\n")
            if n > MAX_MODULE_LINES:
                big.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not big, big


def test_comments_say_what_is_not_what_was() -> None:
    """Issue numbers and session history belong in the CHANGELOG, not in the code."""
    history = r"issue #\d+|\(#\d+\)|\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth) session\b"
    pattern = re.compile(rf"({history}|\bthe seed's\b|\b(no longer|used to|previously|before this change)\b)", re.I)
    hits = []
    for base in (PKG, ROOT / "producers"):
        for path in base.rglob("*.py"):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("module", ["streaming_lstm.cli", "streaming_lstm.trainer.runner", "streaming_lstm.parse.rows"])
def test_modules_import_on_their_own(module: str) -> None:
    """A module imports cleanly in a fresh interpreter (no hidden reliance on import order)."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_readme_layout_matches_the_packages() -> None:
    """The README's Layout section is the packages' docstrings' first paragraphs, regenerated by
    ``python -m streaming_lstm.testing.layout --write``."""
    from streaming_lstm.testing.layout import layout_text

    readme = (ROOT / "README.md").read_text()
    assert layout_text() in readme, "README Layout is stale: run python -m streaming_lstm.testing.layout --write"


if __name__ == "__main__":  # the figures of the layout: python tests/test_layout.py
    graph = _graph()
    print(f"modules {len(graph)}  arrows {sum(len(v) for v in graph.values())}")
    print("\n".join(_long_functions()))
