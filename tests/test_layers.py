"""The import graph, by package, against the written layer list (docs/architecture.md, "Layers").

Every module under shared/, services/ and launch.py is parsed (ast, no import): module-level AND function-level
imports count. A package may import only packages in its own layer or below; services.midi_out only the packages
named in ``ONLY``; no ``stage.py`` (nor the oracle's memory.py, live.py, player.py, voices.py) imports ray;
benchmarks/ and testkit/ never import tests/. The test prints every violation, one a line, then fails.

Two more checks on the same parse: no import cycle between modules (every import counts, a function-level or
``TYPE_CHECKING`` one too: moving an import into a function hides a cycle, it does not break it), and no module
imports another module's private name (``from a import _helper``): what modules share is public.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: lowest first: a package may import only packages of its own layer or below (keep in step with docs/architecture.md)
LAYERS: list[tuple[str, ...]] = [
    ("shared",),
    ("services.ray_support",),  # Ray wiring helpers (node ids, thread pinning, loopback-only start)
    ("services.capture",),  # audio in, the segmenter, input sources
    ("services.encoder",),  # feature views, analysis, perception model and spec, the too-slow guard, fallback
    ("services.model_file",),  # the whole model container: it builds the encoder's perception parts
    ("services.oracle",),  # memory, the decision object, gate, session log, corpus merging
    ("services.midi_out",),
    ("services.control",),  # the control plane only: state, hub, servers
    ("services.trainer", "services.compare", "services.console"),  # console: the performer's web page
    ("services.stack", "services.preflight"),  # the live stack wiring and its checks
    ("launch",),  # the command line
]
#: packages narrower than their layer: they may import only these (besides themselves)
ONLY: dict[str, set[str]] = {
    "services.midi_out": {"shared", "services.ray_support"},  # notes arrive as shared messages
}
LAYER_OF: dict[str, int] = {package: index for index, names in enumerate(LAYERS) for package in names}
#: pure-logic files (no ray): every stage's stage.py and the oracle's memory and decision object
PURE_FILES = ("stage.py", "store.py", "live.py", "walk.py", "voices.py")
#: top-level folders that sit above everything and must never import tests/
NEVER_IMPORT_TESTS = ("benchmarks", "testkit")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    """The layer-list package ``module`` belongs to (longest listed prefix); None when it is not ours."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYER_OF:
            return prefix
    if module == "services":
        return None  # the namespace itself (``from services import oracle`` also yields services.oracle)
    if parts[0] in ("shared", "services", "launch"):
        return module  # ours but not listed: reported as unlisted
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement anywhere in the file; ``from a import b`` gives ``a.b``
    too, so ``from services import oracle`` counts as services.oracle."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def source_files(*tops: str) -> list[Path]:
    files: list[Path] = []
    for top in tops:
        target = ROOT / top
        if target.is_file():
            files.append(target)
        elif target.is_dir():
            files += sorted(target.rglob("*.py"))
    return files


def layer_violations() -> list[str]:
    problems: list[str] = []
    for path in source_files("shared", "services", "launch.py"):
        name = module_name(path)
        own = package_of(name)
        rel = path.relative_to(ROOT)
        if name == "services":
            own = None  # the namespace's own __init__ belongs to no layer
        elif own not in LAYER_OF:
            problems.append(f"{rel}: package {own} is not in the layer list")
            continue
        seen: set[tuple[int, str]] = set()
        for line, imported in imports(path):
            if path.name in PURE_FILES and imported.split(".")[0] == "ray" and (line, "ray") not in seen:
                seen.add((line, "ray"))
                problems.append(f"{rel}:{line}: a {path.name} (pure logic) imports ray ({imported})")
            target = package_of(imported)
            if target is None or target == own or own is None or (line, target) in seen:
                continue
            seen.add((line, target))
            if target not in LAYER_OF:
                problems.append(f"{rel}:{line}: imports {imported} ({target} is not in the layer list)")
            elif own in ONLY and target not in ONLY[own]:
                problems.append(f"{rel}:{line}: {own} may import only {sorted(ONLY[own])}, imports {imported}")
            elif LAYER_OF[target] > LAYER_OF[own]:
                problems.append(
                    f"{rel}:{line}: {own} (layer {LAYER_OF[own]}) imports {imported} "
                    f"({target}, layer {LAYER_OF[target]}, above it)"
                )
    for path in source_files(*NEVER_IMPORT_TESTS):
        lines: set[int] = set()
        for line, imported in imports(path):
            if imported.split(".")[0] == "tests" and line not in lines:
                lines.add(line)
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: imports {imported} ({path.parts[len(ROOT.parts)]}/ "
                    "must not import tests/)"
                )
    return sorted(set(problems))


def test_every_import_respects_the_layer_list():
    problems = layer_violations()
    for problem in problems:
        print(problem)
    assert not problems, f"{len(problems)} import(s) break the layer list:\n" + "\n".join(problems)


def test_the_checker_sees_function_level_and_from_imports(tmp_path):
    """The checker itself: a function-level ``from services import oracle`` is found, as ``services.oracle``."""
    source = tmp_path / "probe.py"
    source.write_text("import shared.config\n\ndef f():\n    from services import oracle\n    import ray\n")
    found = [imported for _, imported in imports(source)]
    assert "shared.config" in found and "services.oracle" in found and "ray" in found
    assert package_of("services.oracle.memory.store") == "services.oracle" and package_of("numpy") is None
    assert package_of("services.model_file") == "services.model_file" and LAYER_OF["services.capture"] == 2


# ---------------------------------------------------------------------------------------------- cycles
def module_graph(root: Path, tops: tuple[str, ...]) -> dict[str, set[str]]:
    """module → the modules of ours it imports (anywhere in the file; ``from a import b`` is ``a.b`` when that is
    a module, else ``a``)."""
    paths = {}
    for top in tops:
        target = root / top
        for path in [target] if target.is_file() else sorted(target.rglob("*.py")) if target.is_dir() else []:
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            paths[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = set()
        for _, imported in imports(path):
            parts = imported.split(".")
            for end in range(len(parts), 0, -1):
                candidate = ".".join(parts[:end])
                if candidate in paths:
                    if candidate != name:
                        targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycle_even_through_function_level_imports():
    found = cycles(module_graph(ROOT, ("shared", "services", "launch.py", "testkit")))
    for component in found:
        print(" <-> ".join(component))
    assert not found, f"{len(found)} import cycle(s): " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_checker_sees_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = module_graph(tmp_path, ("pkg",))
    assert "pkg.a" in graph["pkg.b"] and graph["pkg.a"] == {"pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]  # c imports into the cycle but is not part of it
    (package / "b.py").write_text("def helper():\n    return 1\n")
    assert cycles(module_graph(tmp_path, ("pkg",))) == []


# ---------------------------------------------------------------------------------------------- private names
def private_imports(root: Path, tops: tuple[str, ...]) -> list[str]:
    """``path:line: from module import _name`` for every private name imported from another module of ours."""
    found = []
    for path in source_files(*tops) if root == ROOT else sorted(p for t in tops for p in (root / t).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OURS:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {alias.name}")
    return found


OURS = ("shared", "services", "launch", "testkit", "benchmarks", "pkg")


def test_no_module_imports_another_modules_private_names():
    found = private_imports(ROOT, ("shared", "services", "launch.py", "testkit", "benchmarks"))
    for line in found:
        print(line)
    assert not found, f"{len(found)} private-name import(s) across modules:\n" + "\n".join(found)


def test_the_private_name_checker_sees_one(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("def _kernel():\n    return 1\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import _kernel, __doc__\n    return _kernel()\n")
    assert private_imports(tmp_path, ("pkg",)) == ["pkg/b.py:2: from pkg.a import _kernel"]


def memory_imports_of_the_player(root: Path) -> list[str]:
    """Imports of the player (services.oracle.player) from the memory (services.oracle.memory), with file:line."""
    found = []
    for path in (
        sorted((root / "services" / "oracle" / "memory").rglob("*.py")) if root == ROOT else sorted(root.rglob("*.py"))
    ):
        for line, imported in imports(path):
            if imported == "services.oracle.player" or imported.startswith("services.oracle.player."):
                found.append(f"{path.name}:{line}: {imported}")
    return found


def test_the_memory_never_imports_the_player():
    """The memory (oracle construction, states, information rate, corpus) knows nothing of how it is played."""
    found = memory_imports_of_the_player(ROOT)
    assert not found, found
    assert len(source_files("services/oracle/memory")) >= 7  # the checker really looked at the memory's files


def test_the_memory_checker_sees_a_player_import(tmp_path):
    (tmp_path / "store.py").write_text("def f():\n    from services.oracle.player.live import LiveOracle\n")
    assert memory_imports_of_the_player(tmp_path) == [
        "store.py:2: services.oracle.player.live",
        "store.py:2: services.oracle.player.live.LiveOracle",
    ]
