"""``hero --help`` and ``hero <command> --help`` load no heavy library (issue 14, defect 17).

Checked by what is imported, never by timing: a fresh interpreter builds the parser (and prints each
command's help) and reports which of torch, numpy and transformers ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "transformers")

_PROBE = """
import contextlib, io, json, sys
import hero.cli
hero.cli.build_parser()
for argv in [["--help"]] + [[name, "--help"] for name in hero.cli.COMMANDS] + [["data", sub, "--help"]
        for sub in __import__("hero.commands.data", fromlist=["x"]).SUBCOMMANDS]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            hero.cli.main(argv)
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.argv[1:] if m in sys.modules)))
"""


def _loaded(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_library():
    assert _loaded(_PROBE) == []


def test_import_hero_is_lazy_but_public_names_work():
    code = ("import json, sys\nimport hero\nbefore = sorted(m for m in sys.argv[1:] if m in sys.modules)\n"
            "from hero import Hero, HeroConfig, hero_tiny\nassert Hero.__name__ == 'Hero'\n"
            "assert HeroConfig.__name__ == 'HeroConfig'\nprint(json.dumps(before))")
    assert _loaded(code) == []
