"""The codebase's boundaries, read from its source: which package may import which, and what
installing the project puts into site-packages."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "worker", "webhooks", "feeder", "jobs", "batching", "demo", "bench", "stack",
            "tests", "client")
# The client is a distribution of its own: client/inferq/... is the module `inferq...`.
SOURCE_ROOTS = {"client": ROOT / "client"}
SERVER = {"api", "worker", "webhooks", "feeder", "jobs", "batching", "demo", "bench", "stack",
          "tests"}

# What each package must never import: the front ends use the shared core (jobs, batching),
# never the reverse, and no front end reaches into another.
FORBIDDEN = {
    "jobs": {"api", "worker", "webhooks", "feeder", "demo", "bench", "stack", "tests", "flask",
             "celery", "tensorflow"},
    "batching": {"api", "worker", "webhooks", "feeder", "jobs", "demo", "bench", "stack",
                 "tests", "redis", "celery", "tensorflow", "flask"},
    "api": {"worker", "webhooks", "feeder", "demo", "bench", "stack", "tests", "tensorflow",
            "celery"},
    "worker": {"api", "webhooks", "feeder", "demo", "bench", "stack", "tests", "flask"},
    "webhooks": {"api", "worker", "feeder", "demo", "bench", "stack", "tests", "tensorflow",
                 "flask"},
    "feeder": {"api", "worker", "webhooks", "demo", "bench", "stack", "tests", "tensorflow",
               "flask"},
    "stack": {"api", "worker", "webhooks", "feeder", "demo", "bench", "tests"},
    "bench": {"tests"},
    # Installed on its own (pip install ./client): httpx, rich and click, and nothing of the
    # server's; numpy arrays are taken without importing numpy.
    "client": SERVER | {"flask", "celery", "tensorflow", "redis", "requests", "numpy", "PIL"},
}


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "build" not in path.relative_to(ROOT / package).parts:  # pip's copy
                yield package, path


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(SOURCE_ROOTS.get(package, ROOT)).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def imported(path: Path, module: str = "") -> set[str]:
    """Every module name `path` (the module `module`) imports, anywhere in it (top level or
    inside a function); relative imports resolved."""
    names = set()
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(here[:len(here) - node.level + 1])
            if node.module:  # from .x import y
                base = f"{base}.{node.module}"
                names.add(base)
            # from . import x: the submodule x, not the package itself
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_imports_point_from_the_front_ends_down_to_the_shared_core():
    found = []
    for package, path in modules():
        for name in imported(path, module_name(package, path)):
            if name.split(".")[0] in FORBIDDEN.get(package, ()):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert found == []


def test_no_two_modules_import_each_other():
    graph = {}
    for package, path in modules():
        module = module_name(package, path)
        graph[module] = imported(path, module)
    cycles = []
    for module, deps in graph.items():
        for dep in deps:
            if dep != module and dep in graph and module in graph[dep]:
                cycles.append(tuple(sorted((module, dep))))
    assert sorted(set(cycles)) == []


def test_redis_keys_are_named_in_one_module():
    """Every key is built in jobs/keys.py: a literal "inferq:" prefix anywhere else is a key
    that module does not know about."""
    found = [str(path.relative_to(ROOT)) for package, path in modules()
             if package in ("api", "worker", "webhooks", "jobs") and path.name != "keys.py"
             and '"inferq:' in path.read_text()]
    assert found == []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> set[str]:
    """The top-level names that `pip install .` puts into site-packages."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    return {p.name.removesuffix(".py") for p in target.iterdir()
            if not p.name.endswith((".dist-info", ".egg-info"))}


def test_installing_the_project_adds_no_top_level_modules(installed):
    assert installed & set(PACKAGES) == set()
    assert installed <= {"bin", "__pycache__"}  # nothing of ours at all
