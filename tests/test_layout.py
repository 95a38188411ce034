"""The dependency rule of railwatch's modules, read from the code's own imports.

Layers, lowest first; a module imports only from its own layer or below:

- the event model (``agent.events``), time helpers (``agent.timeparse``, ``agent.clock``)
  and declared settings (``agent.settings``): the vocabulary everything shares;
- parsers (``agent/parsers/``) and detectors (``detectors/``) import only that
  vocabulary, the standard library and their own package: a parser turns lines into
  events, a detector turns events into findings, neither knows where lines come from
  or where findings go;
- the engine: format choice (``agent.parsers.choose``), sources (``agent/sources/``:
  replayed files, tailed files, collectors) and the pipeline;
- sinks (``agent/sinks/``) deliver what they are handed and never open the incident
  store (``agent.incidents.store``): the lifecycle and the deliverer own it;
- the drivers on top: ``agent.scan`` (with ``agent.scan_parallel``, ``agent.scan_split`` and ``agent.report``)
  and ``agent.daemon``, and the CLI over both. Nothing in sources, the daemon, parsers
  or detectors imports the scan driver.

There are no import cycles among product modules. Every import counts, including the
ones inside functions and under ``TYPE_CHECKING``.
"""
from __future__ import annotations

import ast
import os
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("agent", "detectors")

VOCABULARY = {"agent.events", "agent.timeparse", "agent.clock", "agent.settings"}
SCAN_DRIVER = {"agent.scan", "agent.scan_parallel", "agent.scan_split"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def _sources() -> Dict[str, Path]:
    out = {}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _is_package(module: str) -> bool:
    return _sources()[module].name == "__init__.py"


def _resolve(name: str) -> Optional[str]:
    """The product module ``name`` refers to (its nearest existing parent), or None."""
    modules = _sources()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> Iterator[Tuple[str, int]]:
    """Every (imported name, line) in ``module``; ``from pkg import sub`` names ``pkg.sub``
    when ``sub`` is a module of its own."""
    path = _sources()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                yield (candidate if candidate in _sources() else origin), node.lineno


@lru_cache(maxsize=None)
def _stdlib_dir() -> str:
    return os.path.normcase(sysconfig.get_paths()["stdlib"])


def _is_stdlib(name: str) -> bool:
    top = name.partition(".")[0]
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if names is not None:
        return top in names
    if top in sys.builtin_module_names or top == "__future__":
        return True
    import importlib.util

    spec = importlib.util.find_spec(top)
    origin = os.path.normcase(spec.origin or "") if spec is not None else ""
    return origin.startswith(_stdlib_dir()) and "site-packages" not in origin


def _edges() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {m: set() for m in _sources()}
    for module in _sources():
        for name, _ in _imports(module):
            target = _resolve(name) if name.partition(".")[0] in PRODUCT else None
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred modules deep at most)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[List[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _violations(layer: str, allowed) -> List[str]:  # type: ignore[no-untyped-def]
    found = []
    for module in sorted(_sources()):
        if not _in(module, layer):
            continue
        for name, line in _imports(module):
            if not allowed(module, name):
                found.append(f"{_sources()[module].relative_to(ROOT)}:{line} imports {name}")
    return found


def _pure(own: str):  # type: ignore[no-untyped-def]
    def allowed(module: str, name: str) -> bool:
        if name.partition(".")[0] not in PRODUCT:
            return _is_stdlib(name)
        target = _resolve(name)
        return target in VOCABULARY or (target is not None and _in(target, own))
    return allowed


def test_the_graph_covers_every_product_module() -> None:
    assert "agent.scan" in _sources() and "agent.parsers.rails" in _sources() and "detectors" in _sources()
    assert "agent.sources.replay" in _edges()["agent.scan"]


def test_parsers_import_only_the_event_model_time_helpers_settings_and_the_stdlib() -> None:
    assert _violations("agent.parsers", _pure("agent.parsers")) == []


def test_detectors_import_only_the_event_model_time_helpers_settings_and_the_stdlib() -> None:
    assert _violations("detectors", _pure("detectors")) == []


def test_sinks_do_not_open_the_incident_store() -> None:
    assert _violations("agent.sinks", lambda m, n: _resolve(n) != "agent.incidents.store") == []


def test_nothing_below_the_drivers_imports_the_scan_driver() -> None:
    found = []
    for layer in ("agent.sources", "agent.parsers", "detectors", "agent.daemon"):
        found += _violations(layer, lambda m, n: _resolve(n) not in SCAN_DRIVER)
    # agent.daemon_* modules (if any) are the daemon too
    for module in _sources():
        if module.startswith("agent.daemon_"):
            found += _violations(module, lambda m, n: _resolve(n) not in SCAN_DRIVER)
    assert found == []


def test_there_are_no_import_cycles() -> None:
    cycles = [c for c in _strongly_connected(_edges()) if len(c) > 1]
    assert cycles == [], "modules that import each other, directly or round a loop: " + "; ".join(" ⇄ ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]
