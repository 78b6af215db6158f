"""Throw-away virtual environments for install tests.

A fresh venv gets seqframe installed for real (a wheel, or editable) while
its heavy dependencies (torch, Lightning, ...) come from the test
environment through a ``.pth`` file, so no test downloads or reinstalls torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]


def site_packages(venv: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


def make_venv(venv: Path) -> Path:
    """A venv that sees this environment's packages (pip and setuptools too) after its own.

    Its ``bin/pip`` runs that pip under the venv's python, so it installs into the venv.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    (site_packages(venv) / "_seqframe_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = venv / "bin" / "pip"
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    return venv


def pip_install(venv: Path, *arguments: str) -> None:
    """``pip install --no-deps`` into ``venv``, run by this environment's pip."""
    command = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q"]
    result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def build_wheel(directory: Path) -> Path:
    """A wheel of seqframe itself, built without network where setuptools is at hand."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(directory), str(REPO)]
    try:
        import setuptools  # noqa: F401

        command.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return next(directory.glob("seqframe-*.whl"))


def venv_env(venv: Path) -> Dict[str, str]:
    """Environment for running commands "inside" the venv: its bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_in(venv: Path, command: List[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=venv_env(venv), capture_output=True, text=True, timeout=timeout)
