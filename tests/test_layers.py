"""The layers, held by a test: avatar_engine below llm_bridge below app below web, with
commands/ (the `avatar` entry points) the one package above them all; llm_bridge, app and web
use the engine through its public names (avatar_engine/__init__.py's __all__), so the judge
(dlib, whose landmark weights are for non-commercial use) and the rest of training stay out of
the product; no import cycle between modules; no source file over 400 lines.

Every import counts: at the top of a module, inside a function, and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("avatar_engine", "llm_bridge", "app", "web", "commands")  # each imports only below
ENGINE = "avatar_engine"  # what llm_bridge, app and web import, never a module inside it
TRAINING = "avatar_engine.training"  # only training itself and commands/ may import it
MAX_LINES = 400


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module of our packages."""
    found = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module of ours, line) for every import in the file, wherever it stands."""

    def ours(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from pkg import mod` depends on pkg.mod; `from mod import name` on mod
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            module = ours(target)
            if module is not None and module != name:
                yield module, node.lineno


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {module it imports: the line of the first such import}."""
    known = modules(root)
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges[name] = {}
        for target, line in imported(name, path, known):
            edges[name].setdefault(target, line)
    return edges


def layer_breaks(
    edges: dict[str, dict[str, int]], known: dict[str, Path], root: Path = ROOT
) -> list[str]:
    breaks = []
    for name, targets in edges.items():
        rank = LAYERS.index(name.split(".")[0])
        for target, line in targets.items():
            where = f"{known[name].relative_to(root)}:{line}: {name} imports {target}"
            if LAYERS.index(target.split(".")[0]) > rank:
                breaks.append(f"{where}, a higher layer")
            elif 0 < rank < LAYERS.index("commands") and target.startswith(ENGINE + "."):
                breaks.append(f"{where}: import it from {ENGINE}, its public names")
            elif (target + ".").startswith(TRAINING + ".") and not (
                (name + ".").startswith(TRAINING + ".") or name.startswith("commands")
            ):
                breaks.append(f"{where}: training code in the product")
    return sorted(breaks)


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def long_files(known: dict[str, Path], root: Path = ROOT) -> list[str]:
    lengths = {path: len(path.read_text().splitlines()) for path in known.values()}
    return [f"{p.relative_to(root)}: {n} lines" for p, n in lengths.items() if n > MAX_LINES]


def test_no_import_reaches_a_higher_layer_or_training():
    known = modules()
    assert layer_breaks(graph(), known) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_source_file_is_over_400_lines():
    assert long_files(modules()) == []


def test_the_check_sees_every_kind_of_import(tmp_path):
    """Planted breaks fail: upward imports at the top, in a function and under TYPE_CHECKING,
    the judge imported outside training, a module inside the engine imported by the app, and
    cycles, one through a TYPE_CHECKING import."""
    for package in (*LAYERS, "avatar_engine/training"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "avatar_engine" / "training" / "judge.py").write_text("")
    (tmp_path / "avatar_engine" / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from web.top import Page\n"
        "def f():\n    from app import mid\n"
        "import avatar_engine.training.judge\n"
    )
    (tmp_path / "app" / "mid.py").write_text("import avatar_engine\nfrom . import other\n")
    (tmp_path / "app" / "other.py").write_text(
        "from app.mid import x\nfrom avatar_engine.low import f\n"
    )
    (tmp_path / "web" / "top.py").write_text("from commands import cli\n")
    (tmp_path / "commands" / "cli.py").write_text(
        "import web.top\nfrom avatar_engine.training import judge\n"
    )
    known = modules(tmp_path)
    edges = graph(tmp_path)
    assert edges["avatar_engine.low"] == {
        "web.top": 3,
        "app.mid": 5,
        "avatar_engine.training.judge": 6,
    }
    assert edges["app.mid"] == {"avatar_engine": 1, "app.other": 2}
    assert layer_breaks(edges, known, tmp_path) == [
        "app/other.py:2: app.other imports avatar_engine.low: import it from avatar_engine, its "
        "public names",
        "avatar_engine/low.py:3: avatar_engine.low imports web.top, a higher layer",
        "avatar_engine/low.py:5: avatar_engine.low imports app.mid, a higher layer",
        "avatar_engine/low.py:6: avatar_engine.low imports avatar_engine.training.judge: "
        "training code in the product",
        "web/top.py:1: web.top imports commands.cli, a higher layer",
    ]
    assert sorted(cycles(edges)) == [
        ["app.mid", "app.other", "avatar_engine.low"],
        ["commands.cli", "web.top"],
    ]


def test_a_long_file_fails(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "app" / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert [line.split("/")[-1] for line in long_files(modules(tmp_path), tmp_path)] == [
        "long.py: 401 lines"
    ]
