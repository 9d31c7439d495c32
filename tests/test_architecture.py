"""The package's shape: layers whose imports point one way, no import cycle between modules,
private modules behind each subpackage's ``__init__``, every subpackage shipped, no module
past 400 lines."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rxsse"

#: Each layer and the layers it may import. The wire format (``rxsse._event``, ``_payload``,
#: ``_parser``, ``_errors``) is at the top of the package and the bottom of the stack;
#: ``rxsse/__init__.py`` is the public face and imports every layer.
LAYERS: dict[str, set[str]] = {
    "wire": set(),
    "streaming": {"wire"},
    "bus": {"wire", "streaming"},
    "client": {"wire", "streaming"},
    "web": {"wire", "streaming", "bus"},
    "testing": {"wire", "streaming", "bus", "client", "web"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_only(tree: ast.Module) -> set[ast.AST]:
    """The imports under ``if TYPE_CHECKING:``."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            found.update(n for body in node.body for n in ast.walk(body))
    return found


def _imports(path: Path, modules: set[str], *, run_time_only: bool = False) -> set[str]:
    """The rxsse modules ``path`` imports (at run time and for type checking, or at run time
    only)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped = _type_only(tree) if run_time_only else set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            # ``from . import _payload`` imports a module, not its package's face.
            in_package = all(sub in modules for sub in submodules)
            candidates = submodules if in_package else [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def _graph(*, run_time_only: bool = False) -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: _imports(path, set(paths), run_time_only=run_time_only)
        for name, path in paths.items()
    }


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) == 2 and parts[1] in LAYERS:
        return parts[1]  # a subpackage's __init__
    return "wire"


def test_no_import_cycle_between_rxsse_modules():
    # A back-reference for types only (``if TYPE_CHECKING:``, as aiohttp's request names its
    # protocol) is no cycle: nothing imports it at run time. Layers count it (below).
    graph = _graph(run_time_only=True)
    # A package imports its own modules to re-export them: that is no cycle of design.
    graph = {
        name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert graph.get("rxsse.streaming._session"), "the walk found no imports"


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, deps in _graph().items():
        if name == "rxsse":
            continue  # the public face re-exports every layer
        layer = _layer(name)
        for dep in deps:
            if dep == "rxsse":
                wrong.append(f"{name} imports the package's face")
            elif _layer(dep) != layer and _layer(dep) not in LAYERS[layer]:
                wrong.append(f"{name} ({layer}) imports {dep} ({_layer(dep)})")
    assert wrong == []


def test_modules_are_private_behind_their_package():
    # httpx's way: a module is ``_``-private, its package's ``__init__`` says what is public.
    public = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and not path.name.startswith("_")
    ]
    assert public == ["rxsse/testing/plugin.py"]  # (the pytest entry point names it)
    with_all = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("_*.py")
        if path.name != "__init__.py" and "__all__" in path.read_text()
    ]
    assert with_all == []


def test_every_subpackage_is_shipped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = set(config["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages == shipped


#: A module is one job: past this size (in lines) it is doing two.
MAX_MODULE_LINES = 400


def test_modules_stay_small():
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert too_big == []
