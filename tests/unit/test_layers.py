"""The package layout is the architecture: imports point down the layers, and the engine
and the wire vocabulary stay free of I/O.

Layers, lowest first (README, "Architecture"): dns -> dnssec -> engine -> service |
upstream -> server -> daemon -> lab -> cli. A module may import its own package and any
lower layer; `service` and `upstream` sit side by side and do not import each other.
`dns`, `dnssec` and `engine` are sans-I/O.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "resolver"

RANK = {
    "dns": 0,
    "dnssec": 1,
    "engine": 2,
    "service": 3,
    "upstream": 3,
    "server": 4,
    "daemon": 5,
    "cli": 7,
    "lab": 6,
}

#: What a sans-I/O module must never import: sockets, event loops, clocks, the terminal.
IO_MODULES = frozenset({"asyncio", "socket", "ssl", "selectors", "time", "click", "uvloop"})
SANS_IO_LAYERS = frozenset({"dns", "dnssec", "engine"})

#: Module-level functions of `random` that draw from a hidden global generator; the engine
#: is handed a `random.Random` and uses only that.
GLOBAL_RANDOM = frozenset({"random", "randint", "randrange", "choice", "choices", "shuffle",
                           "sample", "getrandbits", "seed", "uniform", "randbytes"})


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _layer(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "resolver":
                found.extend(f"resolver.{alias.name}" for alias in node.names)
    return found


def test_every_module_lives_in_a_layer() -> None:
    loose = [p.name for p in _modules() if _layer(p) is None
             and p.name not in {"__init__.py", "__main__.py"}]
    assert loose == []
    assert {p for p in (_layer(m) for m in _modules()) if p} == set(RANK)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    layer = _layer(path)
    if layer is None:
        return
    upward = []
    for name in _imports(ast.parse(path.read_text())):
        parts = name.split(".")
        if parts[0] != "resolver" or len(parts) < 2 or parts[1] == "__version__":
            continue
        target = parts[1]
        assert target in RANK, f"{name} is not in a layer"
        if target != layer and RANK[target] >= RANK[layer]:
            upward.append(name)
    assert upward == [], f"{layer} may not import {upward}"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _layer(p) in SANS_IO_LAYERS],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_engine_and_dns_modules_do_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    io = [n for n in _imports(tree) if n.split(".")[0] in IO_MODULES]
    assert io == [], f"{path.name} imports {io}"
    drawn = [
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id == "random" and node.attr in GLOBAL_RANDOM
    ]
    assert drawn == [], f"{path.name} draws from the global random generator: {drawn}"


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    # The rule above must be able to fail: an engine module importing the server layer.
    tree = ast.parse("from resolver.server.handler import Handler\nimport socket\n")
    names = _imports(tree)
    assert "resolver.server.handler" in names
    assert RANK["server"] > RANK["engine"]
    assert any(n.split(".")[0] in IO_MODULES for n in names)
