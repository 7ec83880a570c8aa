"""The distribution installs: every package imports and both console scripts answer."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

PACKAGES = ["swarm", "storage", "node", "bootstrap"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", PACKAGES)
def test_package_imports_with_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and module.__doc__.strip()


@pytest.mark.parametrize("script", ["swarm-node", "swarm-bootstrap"])
def test_console_script_help_and_version(script: str) -> None:
    exe = shutil.which(script, path=str(BIN))
    assert exe is not None, f"{script} is not installed in {BIN}"
    helped = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert script in helped.stdout
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.strip() == f"{script} {metadata.version('swarm-node')}"


def test_swarm_node_lists_every_subcommand() -> None:
    out = subprocess.run([str(BIN / "swarm-node"), "--help"], capture_output=True, text=True, timeout=60)
    for command in ["join", "demo", "simulate", "publish", "inspect", "lineage", "status"]:
        assert command in out.stdout


def test_demo_help_describes_every_option() -> None:
    from node.commands.demo import HELP
    from node.demo import DemoSettings

    assert set(HELP) == {f.name for f in dataclasses.fields(DemoSettings)}
    out = subprocess.run([str(BIN / "swarm-node"), "demo", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "neighbours each peer fetches" in " ".join(out.stdout.split())
