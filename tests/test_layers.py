"""Dependencies run one way: CLI -> kist_train -> kistrules.

The language library (every kistrules module but the CLI: kistrules.cli and
kistrules.commands.*) must import without the training engine. A subprocess
installs an import hook that raises on any `kist_train` module, then imports
each library module in turn; one import of kist_train anywhere fails the test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import kistrules

LIBRARY = Path(kistrules.__file__).parent

CHECK = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name == "kist_train" or name.startswith("kist_train."):
                raise ImportError(f"kistrules imported {name}")
            return None

    sys.meta_path.insert(0, Blocked())
    import kistrules

    CLI = ("kistrules.cli", "kistrules.commands", "kistrules.__main__")
    names = [
        info.name
        for info in pkgutil.walk_packages(kistrules.__path__, "kistrules.")
        if not info.name.startswith(CLI)
    ]
    for name in names:
        importlib.import_module(name)
    print(len(names))
    """
)

# What the library calls lazily (inside functions) must not reach kist_train either:
# each of these runs a code path that imported it before the split.
CALLS = textwrap.dedent(
    """
    import numpy as np

    from kistrules.api import loads
    from kistrules.compiler import compile_rulebook
    from kistrules.explain import explain_mask, explain_residual
    from kistrules.resolve import resolve

    scorer = compile_rulebook(resolve(loads(
        "scale gray = 255\\nthreshold 0.8\\n"
        "rule dark: if gray is low then anomalous (1)\\n"
    )))
    image = np.full((16, 16), 200.0)
    image[4:8, 4:8] = 10.0
    residual = np.zeros((16, 16))
    residual[4:8, 4:8] = 1.0
    mask = residual > 0
    explain_mask(scorer, image, mask)
    explain_residual(scorer, image, residual, mu=0.0, sigma=0.1)
    print("ok")
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_library_imports_without_kist_train():
    done = _run(CHECK)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 20  # the walk found the library's modules


def test_explaining_a_mask_or_residual_never_imports_kist_train():
    blocked = CHECK.split("import kistrules\n")[0]
    done = _run(blocked + CALLS)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def _imports_kist_train(path: Path) -> list[str]:
    """`file:line` of every import of kist_train in a module, at any depth (lazy ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(n == "kist_train" or n.startswith("kist_train.") for n in names):
            found.append(f"{path.relative_to(LIBRARY.parent)}:{node.lineno}")
    return found


def test_no_library_module_imports_kist_train_even_lazily():
    cli = {LIBRARY / "cli.py", LIBRARY / "__main__.py"}
    modules = [
        p
        for p in sorted(LIBRARY.rglob("*.py"))
        if p not in cli and (LIBRARY / "commands") not in p.parents
    ]
    assert len(modules) > 20
    offenders = [hit for path in modules for hit in _imports_kist_train(path)]
    assert offenders == []
