"""The README's "Layout" section, generated from the packages' own docstrings (their first
paragraph), so the README cannot drift from the code: ``python -m streaming_lstm.testing.layout
--write`` rewrites it, and tests/test_layout.py checks it."""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- layout: generated from the packages' docstrings by python -m streaming_lstm.testing.layout --write -->"
END = "<!-- /layout -->"
WIDTH = 100
INDENT = 20

# What the tree holds besides the packages, in the order shown.
OTHERS = {
    "streaming_lstm/cli.py": "the console script and the file spark-submit runs (streaming_lstm.commands.main)",
    "streaming_lstm/resources/": "log4j2.properties for the JVMs this project starts",
    "conf/": "iris.toml (row mode), solar.toml (event mode, forecasting)",
    "data/": "Fisher's Iris; solar-hourly.csv; where they come from: data/README.md",
    "bench/": "python -m bench NAME; results in bench/results/*.json",
    "tests/": "tiers by pytest marker (unit, spark, kafka, hdfs, connect, cluster, faults, slow)",
    "docs/": "the longer reference pages the README links to",
}


def _summary(init: Path) -> str:
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _entry(name: str, text: str) -> list[str]:
    """``name`` on its own line, then ``text`` wrapped and indented under it."""
    return [name, *[" " * INDENT + line for line in textwrap.wrap(text, WIDTH - INDENT)]]


def layout_text() -> str:
    out = ["```", "streaming_lstm/"]
    for init in sorted((ROOT / "streaming_lstm").glob("*/__init__.py")):
        out += _entry(f"  {init.parent.name}/", _summary(init))
    out += _entry("producers/", _summary(ROOT / "producers" / "__init__.py"))
    for name, text in OTHERS.items():
        out += _entry(name, text)
    out.append("```")
    return "\n".join([BEGIN, *out, END])


def write(readme: Path = ROOT / "README.md") -> bool:
    """Rewrite the generated block of ``readme``; True if it changed."""
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + layout_text() + text[end:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streaming_lstm.testing.layout", description=__doc__)
    p.add_argument("--write", action="store_true", help="rewrite README.md's Layout block (default: print it)")
    args = p.parse_args(argv)
    if args.write:
        print("README.md updated" if write() else "README.md already up to date")
    else:
        print(layout_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
