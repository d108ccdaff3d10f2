"""An arm64 Debian root in which qemu-aarch64-static runs Python, NumPy, ONNX Runtime and LiteRT.

``scripts/build_arm64_root.sh`` builds the root (once; later calls reuse the cache in seconds).
Programs run with ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3``: no chroot, no binfmt
registration, no root privileges. With ``-L`` qemu looks every absolute path up in ROOT first
and uses the host's file when ROOT has none, so a script anywhere on this machine can be run
as is (nothing is copied into ROOT), ``/tmp`` and ``/proc/self`` are the host's, and
``/proc/cpuinfo`` and ``/sys/devices/system/cpu/{possible,present,online}`` are the fake
Cortex-A72 ones the script writes (ONNX Runtime segfaults under qemu-user without them).

Limits of qemu-user to keep in mind: ``fork()`` works (the child is emulated too), but
``exec`` of an aarch64 program from inside the guest (``subprocess.run([sys.executable, ...])``)
fails with "Exec format error" unless binfmt_misc has qemu registered, and ``exec`` of a plain
command such as ``uname`` runs the host's x86-64 binary. Timings under qemu say nothing about
real arm64 speed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_arm64_root.sh"
QEMU = "qemu-aarch64-static"
MISSING_PREREQUISITE = 3  # the build script's exit status when a tool or root is missing


class Arm64RootError(RuntimeError):
    """The arm64 root could not be built or used; the message holds the build log's tail."""


def qemu_path() -> str | None:
    return shutil.which(QEMU)


def build_arm64_root(timeout_s: float = 1800.0, env: dict[str, str] | None = None) -> Path:
    """Build or reuse the root through the script; returns its path.

    Raises :class:`Arm64RootError` (with ``.missing`` True when a prerequisite is absent)."""
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("EDGECOST_PIP_PYTHON", _pip_python())
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout_s, env=run_env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        error = Arm64RootError(
            f"{BUILD_SCRIPT.name} failed (exit {proc.returncode}):\n" + "\n".join(proc.stderr.splitlines()[-40:])
        )
        error.missing = proc.returncode == MISSING_PREREQUISITE
        raise error
    root = Path(lines[-1])
    if not (root / "usr" / "bin" / "python3").exists():
        raise Arm64RootError(f"{BUILD_SCRIPT.name} printed {root}, which holds no usr/bin/python3")
    return root


def _pip_python() -> str:
    """A python with pip to run `pip download`: this one if it has pip, else python3."""
    return sys.executable if importlib.util.find_spec("pip") is not None else "python3"


def guest_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a guest program: the host's, minus what would mislead the guest's
    Python (PYTHONPATH, PYTHONHOME, a venv) or qemu (QEMU_*), with byte-code writing off so the
    cached root never changes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PYTHON") or k.startswith("QEMU_") or k in ("VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def arm64_python_argv(root: str | os.PathLike) -> list[str]:
    """The command line prefix that runs the root's python3 under qemu."""
    qemu = qemu_path()
    if qemu is None:
        raise Arm64RootError(f"{QEMU} not found; apt-get install qemu-user-static")
    root = Path(root)
    return [qemu, "-L", str(root), str(root / "usr" / "bin" / "python3")]


def run_arm64(
    args: Sequence[str | os.PathLike],
    root: str | os.PathLike,
    input: str | bytes | None = None,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run the root's python3 under qemu with ``args`` (a script path and its arguments, or
    ``-c CODE``); output is text unless ``input`` is bytes. ``env`` adds to :func:`guest_env`."""
    return subprocess.run(
        [*arm64_python_argv(root), *map(str, args)],
        input=input,
        capture_output=True,
        text=not isinstance(input, bytes),
        timeout=timeout,
        env=guest_env(env),
        cwd=cwd,
        check=check,
    )


def write_python_wrapper(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A shell script at ``path`` that behaves like the root's python3 (arguments and stdin
    passed through), e.g. as an :class:`SshHost`'s ``python`` to run the agent "on an arm64
    board" over SSH."""
    path = Path(path)
    argv = " ".join(f"'{a}'" for a in arm64_python_argv(root))
    path.write_text(
        "#!/bin/sh\n"
        "# The arm64 root's python3 under qemu-user (tests/support/armroot.py).\n"
        "unset PYTHONPATH PYTHONHOME VIRTUAL_ENV LD_LIBRARY_PATH LD_PRELOAD\n"
        "PYTHONDONTWRITEBYTECODE=1; export PYTHONDONTWRITEBYTECODE\n"
        f'exec {argv} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="session")
def arm64_root() -> Path:
    """The arm64 root (built on first use: about a minute and ~0.5 GB; then reused). Skips without
    qemu/debootstrap, or fails when ``EDGECOST_REQUIRE_FLEET=1``."""
    from support.ssh_fixtures import skip_or_fail  # EDGECOST_REQUIRE_FLEET=1: fail, do not skip

    if qemu_path() is None:
        skip_or_fail(f"{QEMU} is not installed (apt-get install qemu-user-static)")
    try:
        return build_arm64_root()
    except Arm64RootError as exc:
        if getattr(exc, "missing", False):
            skip_or_fail(str(exc).splitlines()[-1])
        raise
