"""The tree shows the flow: lower layers never import higher ones, and no import goes in a circle.

Read from the source (``ast``), not by importing it, so a lazy import inside a function counts
as much as one at the top. Imports under ``if TYPE_CHECKING:`` are for type hints only and do
not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from service.config import REPO_ROOT

PACKAGES = ("service", "offline")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO_ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports (a name imported from a package counts as its
    submodule when there is one)."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_goes_in_a_circle():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("circular import: " + " → ".join(cycle))
        if module in done:
            return
        for target in GRAPH[module]:
            visit(target, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])


# module prefix → what it must never import
FORBIDDEN = {
    "service.identifiers": ("service",),
    "service.outcome": ("service",),
    "service.store": ("service.engine", "service.stages", "service.decide", "service.gather",
                      "service.decisions", "service.api", "service.schemas", "service.runtime",
                      "service.scoring", "service.verification", "offline"),
    "service.engine": ("service.stages", "service.decide", "service.gather", "service.decisions",
                       "service.api", "service.runtime", "service.store", "service.verification",
                       "service.scoring", "service.ruletests", "offline"),
    "service.scoring": ("service.stages", "service.decide", "service.gather", "service.decisions",
                        "service.api", "service.runtime", "service.store", "offline"),
    "service.stages": ("service.decide", "service.gather", "service.decisions", "service.api",
                       "service.runtime", "service.store", "service.verification", "offline"),
    "service.decide": ("service.gather", "service.decisions", "service.api", "service.runtime",
                       "service.store", "service.verification", "offline"),
    "service.verification": ("service.stages", "service.decide", "service.decisions", "service.api",
                             "service.runtime", "service.store", "offline"),
    "service.gather": ("service.decisions", "service.api", "service.runtime", "offline"),
    "service.decisions": ("service.api", "service.runtime", "offline"),
    "service.explanations": ("service.api", "service.runtime", "service.decisions", "offline"),
    "service.model_versions": ("service.api", "service.runtime", "service.decisions", "offline"),
    "service.review": ("service.api", "service.runtime", "service.decisions", "offline"),
    "service.runtime": ("service.api", "offline"),
    "service.api": ("offline",),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer):
    wrong = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if _under(module, layer)
                   for target in targets if _under(target, *FORBIDDEN[layer]))
    assert not wrong, wrong


def test_http_errors_and_web_frameworks_stay_in_the_api():
    """Domain errors become HTTP in service/api/ and nowhere else."""
    for module, path in MODULES.items():
        if _under(module, "service.api"):
            continue
        assert "service.api.problems" not in GRAPH[module], module
        tree = ast.parse(path.read_text())
        frameworks = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                      for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                                  if isinstance(node, ast.ImportFrom) and node.module}
        assert not frameworks & {"fastapi", "starlette"}, module


def test_the_request_path_needs_no_offline_tool():
    """Serving imports no backtest, report, chart or training code."""
    serving, stack = set(), ["service.api.app"]
    while stack:
        module = stack.pop()
        if module not in serving:
            serving.add(module)
            stack.extend(GRAPH[module])
    assert not {m for m in serving if _under(m, "offline")}
