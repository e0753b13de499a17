"""Every command line the project shows a user is a real one: each ``streaming-lstm ...`` line in
the fenced blocks of the README and docs/, in the ``--help`` texts and in docker-compose.yml is
parsed by the console script's own parser; each subcommand's ``--help`` exits 0; ``produce`` runs
through the console script; every benchmark takes ``--json``; every ``scripts/test.sh ...`` line
runs as written (collection only)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from streaming_lstm.cli import build_parser, main
from tests.test_compat import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("streaming-lstm", ".venv/bin/streaming-lstm", "scripts/demo.sh")


def fenced_lines(text: str) -> list[str]:
    """The lines of a page's fenced blocks, with backslash continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    return lines


def command_argv(line: str) -> list[str] | None:
    """The arguments after the program, for a line that runs streaming-lstm (or the demo script)."""
    line = line.strip().removeprefix("$ ")
    if not any(program in line.split("#")[0].split() for program in PROGRAMS):
        return None  # output, or another program's command
    words = shlex.split(line, comments=True)
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
        words.pop(0)
    if not words or words[0] not in PROGRAMS:
        return None
    return (["demo"] if words[0] == "scripts/demo.sh" else []) + words[1:]


def documented() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for line in fenced_lines(page.read_text()):
            argv = command_argv(line)
            if argv is not None:
                found.append((f"{page.name}: {line.strip()}", argv))
    return found


def parses(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        if argv in (["--help"], ["-h"], ["--version"]) and exc.code == 0:
            return argparse.Namespace()
        raise AssertionError(f"does not parse: {shlex.join(argv)}") from None


def test_the_docs_show_commands() -> None:
    seen = {argv[0] for _, argv in documented() if argv and not argv[0].startswith("-")}
    assert {"train", "predict", "fit", "evaluate", "demo", "produce", "broker", "export", "report", "init-config"} <= seen, seen


@pytest.mark.parametrize(("where", "argv"), documented(), ids=[w for w, _ in documented()])
def test_every_documented_command_line_parses(where: str, argv: list[str]) -> None:
    parses(argv)


def help_examples() -> list[tuple[str, list[str]]]:
    """``streaming-lstm ...`` lines in the parser's and every subcommand's help texts."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, p in [("streaming-lstm", parser), *sub.choices.items()]:
        text = "\n".join(filter(None, [p.description, p.epilog]))
        for line in text.splitlines():
            argv = command_argv(line)
            if argv is not None:
                out.append((f"{name}: {line.strip()}", argv))
    return out


def test_help_texts_show_examples_that_parse() -> None:
    examples = help_examples()
    assert examples, "the top-level epilog shows examples"
    for _, argv in examples:
        parses(argv)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_explains_itself(command: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: streaming-lstm {command}" in out.getvalue() and len(out.getvalue().splitlines()) > 3


def test_the_console_script_hands_produce_and_jars_their_options() -> None:
    script = Path(sys.executable).parent / "streaming-lstm"
    for command in ("produce", "jars"):
        r = subprocess.run([str(script), command, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "--help" in r.stdout and "unrecognized" not in r.stderr
    r = subprocess.run([str(script), "-v", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("streaming-lstm ")


def test_compose_commands_parse_with_the_console_parser() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    producer = services["producer"]["command"]
    assert producer[0] == "streaming-lstm"
    assert parses(producer[1:]).command == "produce"
    trainer = services["trainer"]["command"]
    script = next(i for i, a in enumerate(trainer) if a.endswith("cli.py"))
    assert parses(trainer[script + 1 :]).command == "train"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in re.findall(r"(?m)^(?:CMD|ENTRYPOINT|RUN) (.*streaming-lstm.*)$", dockerfile):
        argv = command_argv(line)
        assert argv is None or parses(argv)


def test_produce_through_the_console_script_sends_every_row_into_a_socket() -> None:
    """``streaming-lstm produce`` as a user types it: the rows arrive on the other end, in number."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(sys.executable).parent / "streaming-lstm"
    cmd = [str(script), "produce", "--data", "data/iris.csv", "--sink", "socket", "--port", str(port), "--limit", "25", "--rate", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        with conn, conn.makefile("r") as lines:
            received = [line for line in lines if line.strip()]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(received) == 25 and all(line.count(",") == 4 for line in received)
    assert "sent 25 rows" in out


BENCHMARKS = sorted(__import__("bench.__main__", fromlist=["BENCHMARKS"]).BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_takes_json(name: str) -> None:
    """``python -m bench`` promises ``--json`` for every benchmark: each one's parser offers it."""
    import importlib

    module = importlib.import_module(f"bench.{name.replace('-', '_')}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0 and "--json" in out.getvalue()


class _Parsed(Exception):
    """Raised by the patched ``parse_args``: the benchmark's command line parsed, nothing run."""


def documented_benchmarks() -> list[tuple[str, list[str]]]:
    """Every ``python -m bench NAME ...`` the README and docs/ show in backticks, as (where, argv)."""
    found = []
    for page in PAGES:
        for command in re.findall(r"`python -m bench ([^`]+)`", page.read_text(), flags=re.S):
            words = shlex.split(" ".join(command.split()))
            if words[0] != "NAME":  # the generic form
                found.append((f"{page.name}: python -m bench {' '.join(words)}", words))
    return found


@pytest.mark.parametrize(("where", "argv"), documented_benchmarks(), ids=[w for w, _ in documented_benchmarks()])
def test_every_documented_benchmark_command_parses(where: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each benchmark command line the pages show names a benchmark and parses with its own parser."""
    import importlib

    assert argv[0] in BENCHMARKS, f"{where}: no benchmark {argv[0]!r}"
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: list[str] | None = None, namespace: object = None) -> argparse.Namespace:
        raise _Parsed(parse(self, args, namespace))  # type: ignore[arg-type]

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    module = importlib.import_module(f"bench.{argv[0].replace('-', '_')}")
    with pytest.raises(_Parsed):
        module.main(argv[1:])


def documented_test_runs() -> list[str]:
    """The arguments of every ``scripts/test.sh ...`` line the README and docs/ show (fenced or in
    backticks), each as one shell-quoted string ('' for the bare script)."""
    found: set[str] = set()
    for page in PAGES:
        text = page.read_text()
        for line in [*fenced_lines(text), *re.findall(r"`(scripts/test\.sh[^`\n]*)`", text)]:
            if line.strip().startswith("scripts/test.sh"):
                found.add(shlex.join(shlex.split(line, comments=True)[1:]))
    return sorted(found)


def selected(args: str) -> tuple[int, int]:
    """(selected, collected) for ``scripts/test.sh ARGS``: the script runs as written (set-up, its
    pytest options, these arguments) with collection only."""
    cmd = ["bash", "scripts/test.sh", *shlex.split(args), "--collect-only", "-q", "-p", "no:cacheprovider"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"scripts/test.sh {args}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    found = re.search(r"^(\d+)(?:/(\d+))? tests? collected", r.stdout, flags=re.M)
    assert found, r.stdout[-2000:]
    return int(found[1]), int(found[2] or found[1])


@pytest.mark.slow
def test_every_documented_test_run_selects_tests() -> None:
    """Each way the pages show to run the tests works as written; a tier (-m) selects some of the
    tests and not all. The bare ``scripts/test.sh`` is the one CI runs, so it is not repeated here."""
    runs = documented_test_runs()
    assert "" in runs and len(runs) >= 3, runs
    for args in runs[1:]:
        chosen, whole = selected(args)
        assert 0 < chosen <= whole, f"scripts/test.sh {args}: {chosen} tests of {whole}"
        assert chosen < whole or "-m" not in args, f"scripts/test.sh {args} selects the whole suite"
