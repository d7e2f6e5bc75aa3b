"""Imports point one way: the library packages never import the trainer or the command line.

`hero.train` trains the models and tasks of the library, and `hero.commands` drives both; the
library itself (model, data, objectives, tasks, search, evaluation, figures, extraction) must
work without either, so a search server or a notebook loads a task model without the trainer.
Two checks: importing every module of a library package in a fresh interpreter leaves
`hero.train` and `hero.commands` out of ``sys.modules``; and no module file of those packages
names them in an import statement, at module level or inside a function (lazy imports included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hero

LIBRARY = ("hero.model", "hero.data", "hero.tasks", "hero.search", "hero.eval", "hero.viz", "hero.objectives",
           "hero.extract")
FORBIDDEN = ("hero.train", "hero.commands")
ROOT = Path(hero.__file__).parent

_PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]]
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("package", LIBRARY)
def test_importing_a_library_package_imports_no_trainer(package):
    out = subprocess.run([sys.executable, "-c", _PROBE, package], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["imported"]) > 1 or package in result["imported"]
    bad = [m for m in result["modules"] if _forbidden(m)]
    assert not bad, f"importing {package} (and its {len(result['imported'])} modules) imported {bad}"


def _module_files(package: str) -> list[Path]:
    return sorted((ROOT / package.split(".", 1)[1]).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "hero":  # from hero import train
                found += [(node.lineno, f"hero.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("package", LIBRARY)
def test_no_library_module_names_the_trainer(package):
    files = _module_files(package)
    assert files, f"no module file under {package}"
    bad = [f"{path.relative_to(ROOT.parent)}:{line}: {name}" for path in files for line, name in _imports(path)
           if _forbidden(name)]
    assert not bad, "library modules import the trainer or the CLI:\n" + "\n".join(bad)


def test_the_static_check_sees_imports_inside_functions(tmp_path):
    """The scan is not vacuous: it finds a lazy import inside a function and ``from hero import train``."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from hero.train.finetune import x\n    from hero import commands\n")
    assert [n for _, n in _imports(path) if _forbidden(n)] == ["hero.train.finetune", "hero.commands"]
