"""The training commands bound oneDNN's primitive cache before torch starts, unless the user set it.

Without the bound the trainer's memory grows by about 7 MiB per 1,000 steps (docs/benchmarks.md,
"Memory soak"). Each check runs the command in a fresh interpreter, because oneDNN reads the
variable once and the test process may have started torch already. The command is pointed at a
config file that does not exist: it fails after `run()` began, which is enough to see what it did
to the environment (and whether that came before the first ``import torch``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hero.commands._runtime import ONEDNN_CACHE_CAPACITY, bound_onednn_cache

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, os, sys
seen = {}

class TorchImportProbe:
    # records the cache variables at the moment torch is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = {k: os.environ.get(k) for k in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY",
                                                              "DNNL_PRIMITIVE_CACHE_CAPACITY")}
        return None

sys.meta_path.insert(0, TorchImportProbe())
from hero.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "at_torch_import": seen.get("torch"),
                  "at_exit": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")}))
"""


def probe(argv: list[str], **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")}
    env.update(env_extra, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_training_commands_bound_the_cache_before_torch(command, tmp_path):
    out = probe([command, "--config", str(tmp_path / "missing.yaml")])
    assert out["code"] == 2  # the missing config is reported as a user error
    assert out["at_exit"] == str(ONEDNN_CACHE_CAPACITY)
    # torch was imported by the command, and only after the bound was set
    assert out["at_torch_import"] == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(ONEDNN_CACHE_CAPACITY),
                                      "DNNL_PRIMITIVE_CACHE_CAPACITY": None}


def test_a_users_own_capacity_wins(tmp_path):
    # both commands call the same helper (checked above); one subprocess shows the user's value survives
    out = probe(["pretrain", "--config", str(tmp_path / "missing.yaml")], ONEDNN_PRIMITIVE_CACHE_CAPACITY="0")
    assert out["code"] == 2
    assert out["at_exit"] == "0"
    assert out["at_torch_import"]["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "0"


def test_bound_helper_sets_only_when_unset():
    env: dict[str, str] = {}
    bound_onednn_cache(env)
    assert env == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(ONEDNN_CACHE_CAPACITY)}
    env = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "2048"}
    bound_onednn_cache(env)
    assert env == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "2048"}
    # the older DNNL_ name counts as the user's setting: an ONEDNN_ value would take precedence over it
    env = {"DNNL_PRIMITIVE_CACHE_CAPACITY": "7"}
    bound_onednn_cache(env)
    assert env == {"DNNL_PRIMITIVE_CACHE_CAPACITY": "7"}

