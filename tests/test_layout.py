"""The package layout shows the architecture (issue 15): registrations only in LAVIS's kind
folders, imported by one registration module; a package root without side effects; no import
cycles; imports and documented commands that name existing modules; no references to files
outside the repository. Everything is read from the source (AST), nothing is imported, except
in the subprocess of the side-effect-free root test."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "lavis_regionvlm"
PACKAGE_DIR = REPO / PACKAGE
KIND_FOLDERS = ("models", "datasets", "tasks", "processors", "runners")
REGISTRATION = f"{PACKAGE}.registration"


# ---------------------------------------------------------------- reading the source


def module_name(path: Path) -> str:
    """`lavis_regionvlm/ris/points.py` -> `lavis_regionvlm.ris.points` (a package: its folder)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


MODULES = package_modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def existing_module(dotted: str) -> Optional[str]:
    """The longest prefix of `dotted` that is a module of the package (None outside it)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def imports(path: Path, name: str) -> Iterator[tuple[str, bool, int, bool]]:
    """(imported module, at module level, line, names an existing module exactly) for every
    `import` / `from ... import` of the package in the file. An import inside a function body
    is not at module level; one in a class body or under `with` / `if` / `try` is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, module_level: bool) -> Iterator[tuple[str, bool, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        yield alias.name, module_level, child.lineno, alias.name in MODULES
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base == PACKAGE or base.startswith(PACKAGE + "."):
                    for alias in child.names:
                        full = f"{base}.{alias.name}"
                        if full in MODULES:  # `from pkg import submodule`
                            yield full, module_level, child.lineno, True
                        else:
                            yield base, module_level, child.lineno, base in MODULES
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, inner)

    yield from visit(tree, True)


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """module -> the package modules whose import its import starts. Importing `a.b.c` runs
    `a`, `a.b` and `a.b.c`; the importer's own parent packages are already running (they
    come first), so they are no edge."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        own = set(ancestors(name))
        for target, module_level, _, _ in imports(path, name):
            if module_level_only and not module_level:
                continue
            resolved = existing_module(target)
            if resolved is None:
                continue
            for step in [*ancestors(resolved), resolved]:
                if step != name and step not in own:
                    graph[name].add(step)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> Optional[list[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def register_decorators(path: Path) -> list[tuple[int, str]]:
    """(line, decorator) of every `@registry.register_*(...)` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        for decorator in getattr(node, "decorator_list", []):
            call = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (isinstance(call, ast.Attribute) and call.attr.startswith("register_")
                    and isinstance(call.value, ast.Name) and call.value.id == "registry"):
                found.append((decorator.lineno, ast.unparse(decorator)))
    return found


# ---------------------------------------------------------------- registration


def test_register_decorators_live_only_in_the_kind_folders_and_the_registration_module_imports_them():
    registering = {name: register_decorators(path) for name, path in MODULES.items()}
    registering = {name: found for name, found in registering.items() if found}
    assert len(registering) >= 10, registering  # models, datasets, tasks, processors, runners
    outside = [f"{MODULES[name].relative_to(REPO)}:{line}: @{text}"
               for name, found in registering.items() for line, text in found
               if name.split(".")[1] not in KIND_FOLDERS]
    assert not outside, ("register decorators outside the LAVIS kind folders "
                         f"({', '.join(KIND_FOLDERS)}):\n" + "\n".join(outside))
    imported = {target for target, module_level, _, _ in imports(MODULES[REGISTRATION], REGISTRATION)
                if module_level}
    missing = sorted(set(registering) - imported)
    assert not missing, (f"modules with @registry.register_* that {REGISTRATION} does not import "
                         f"(add `import NAME` there): {missing}")


def test_nothing_but_the_registration_module_imports_the_builders_for_their_side_effect():
    """The RIS and VCR tasks no longer register dataset builders by importing them."""
    for name in ("tasks.zero_shot_ris", "tasks.zero_shot_vcr"):
        targets = {t for t, _, _, _ in imports(MODULES[f"{PACKAGE}.{name}"], f"{PACKAGE}.{name}")}
        assert not any(t.endswith("_builder") or t.endswith(".builder") for t in targets), (name, targets)


# ---------------------------------------------------------------- a root without side effects


def test_package_root_and_regions_import_neither_torch_nor_lavis():
    code = (
        "import json, sys\n"
        "import lavis_regionvlm\n"
        "from lavis_regionvlm import Region, RegionError, points_to_text, text_to_points, __version__\n"
        "from lavis_regionvlm.regions import Region as R\n"
        "import lavis_regionvlm.regions.region_input, lavis_regionvlm.common.seeding\n"
        "assert R is Region and points_to_text([[0.32, 0.64]]) == '[32 64]'\n"
        "print(json.dumps({'version': __version__,\n"
        "                  'loaded': sorted(m for m in ('torch', 'lavis') if m in sys.modules),\n"
        "                  'plugin': sorted(m for m in sys.modules if m.startswith('lavis_regionvlm.')\n"
        "                                   and m.split('.')[1] in ('models', 'datasets', 'tasks',\n"
        "                                                           'registration'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"version": "0.1.0", "loaded": [], "plugin": []}


# ---------------------------------------------------------------- imports


def test_no_import_cycle_among_module_level_imports():
    cycle = find_cycle(import_graph(module_level_only=True))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_even_through_imports_inside_functions():
    """A function-level import back into a module that imports this one at module level
    works, but the two modules then depend on each other: what both need belongs in a third
    module (as `cli/common.py` for `cli/main.py` and `cli/chat_loop.py`)."""
    graph = import_graph(module_level_only=False)
    # The one allowed upward call: building a region model imports the registration module at
    # run time (`RegionBlip2.from_config`), so LAVIS finds the processors its config names even
    # when the start-up hook registered nothing. The registration module is the top of the graph
    # and is never imported at module level below it (the module-level test checks that).
    for importer in ("lavis_regionvlm.models.region_core",):
        graph[importer].discard(REGISTRATION)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (module- and function-level imports): " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    """The check above would see one (a -> b -> c -> a), and a package importing its own
    submodule is none."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def python_sources() -> list[Path]:
    folders = [PACKAGE_DIR, REPO / "benchmarks", REPO / "tests", REPO / "docs", REPO / "scripts"]
    return [p for folder in folders if folder.exists() for p in sorted(folder.rglob("*.py"))]


def test_every_import_of_the_package_names_an_existing_module():
    """After moves (`data` -> `preparation`, `ris.progress` -> `common.progress`, ...) no
    import anywhere (package, tests, benchmarks, docs, scripts) names an old path."""
    stale = []
    for path in python_sources():
        name = module_name(path) if path.is_relative_to(PACKAGE_DIR) else "outside.module"
        for target, _, line, exact in imports(path, name):
            if not exact:
                stale.append(f"{path.relative_to(REPO)}:{line}: {target}")
    assert not stale, "imports of modules that do not exist:\n" + "\n".join(stale)


def tracked_text_files(*tops: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *tops], cwd=REPO, capture_output=True, check=True)
    paths = [REPO / p for p in listed.stdout.decode().split("\0") if p]
    return [p for p in paths if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".sh", ".txt", ".js",
                                                             ".html", ".cfg", ".ini", ".in", ""}]


def test_every_documented_module_command_exists():
    """Every `python -m` command of the plugin in the README, docs, projects, scripts,
    messages and tests names a module that runs (a package needs its `__main__`)."""
    command = re.compile(r"(?:python3? -m |\"-m\", \")(lavis_regionvlm\w*(?:\.\w+)*)")
    missing = []
    for path in tracked_text_files(PACKAGE, "README.md", "docs", "projects", "scripts", "benchmarks", "tests"):
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for dotted in command.findall(line):
                runnable = (REPO / f"{dotted}.py").is_file() if "." not in dotted and dotted != PACKAGE else (
                    dotted in MODULES and (not is_package(dotted) or f"{dotted}.__main__" in MODULES))
                if not runnable:
                    missing.append(f"{path.relative_to(REPO)}:{number}: python -m {dotted}")
    assert not missing, "commands naming no runnable module:\n" + "\n".join(missing)


# ---------------------------------------------------------------- references outside the repository

OUTSIDE = re.compile(r"DESIGN\.md|/work/|\.\./shared")


def test_no_reference_to_files_outside_the_repository():
    """Comments and docs explain themselves or cite a file of the repository (tests read
    their real records from tests/data)."""
    found = []
    for path in tracked_text_files(PACKAGE, "benchmarks", "scripts", "projects", "docs", "README.md", "tests",
                                   "setup.py", "lavis_regionvlm_autoload.py", "MANIFEST.in"):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "references to files outside the repository:\n" + "\n".join(found)
