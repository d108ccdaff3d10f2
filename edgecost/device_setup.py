"""`edgecost devices setup NAME`: make the agent's Python dependencies available on a device.

The agent needs Python >= 3.6, NumPy and the device's runtime (onnxruntime, ai-edge-litert
or tflite-runtime, torch).  Setup checks what the device's Python has; for what is missing
it makes a user-level venv that still sees the system's packages
(``python3 -m venv --system-site-packages WORKDIR/venv``), installs the missing packages
there with pip — from the package index when the device can reach one, or from wheels
uploaded from this machine (``--wheels DIR``) — and records the venv's python as the
device's ``python`` in the inventory.  What it cannot install it reports, with the exact
commands that would (``pip download`` for the device's platform here, then ``--wheels``;
or the distribution's packages).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import AgentError, TransportError, UsageError

#: runtime -> (modules that provide it, pip package to install) by Python version.
def runtime_package(runtime: str, py: tuple[int, int]) -> tuple[tuple[str, ...], str]:
    if runtime == "onnxruntime":
        return ("onnxruntime",), "onnxruntime"
    if runtime == "tflite":
        return ("ai_edge_litert", "tflite_runtime"), "ai-edge-litert" if py >= (3, 9) else "tflite-runtime"
    if runtime == "torch":
        return ("torch",), "torch"
    raise UsageError(f"unknown runtime {runtime!r}", "use onnxruntime, tflite or torch")


# Runs on the device with its Python (>= 3.6 syntax; prints one JSON line).
_PROBE = r'''
import json, platform, site, sys, sysconfig
out = {"version": platform.python_version(), "version_info": list(sys.version_info[:2]),
       "executable": sys.executable, "prefix": sys.prefix,
       "base_prefix": getattr(sys, "base_prefix", sys.prefix), "machine": platform.machine(),
       "libc": list(platform.libc_ver()), "modules": {}, "site_packages": []}
try:
    out["site_packages"] = list(site.getsitepackages())
except Exception:
    out["site_packages"] = [sysconfig.get_paths()["purelib"]]
try:
    import importlib.util as iu
    find = iu.find_spec
except ImportError:
    find = None
def version(dist):
    try:
        from importlib.metadata import version as v
        return v(dist)
    except Exception:
        return None
for name, dist in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai_edge_litert", "ai-edge-litert"),
                   ("tflite_runtime", "tflite-runtime"), ("torch", "torch"), ("pip", "pip"),
                   ("venv", None), ("ensurepip", None)):
    try:
        found = find(name) is not None if find else False
    except Exception:
        found = False
    out["modules"][name] = (version(dist) or "yes") if found and dist else ("yes" if found else None)
if out["modules"]["numpy"]:
    try:
        import numpy
        out["modules"]["numpy"] = numpy.__version__
    except Exception as exc:
        out["modules"]["numpy"] = None
        out["numpy_error"] = "%s: %s" % (type(exc).__name__, exc)
print("EDGECOST_SETUP " + json.dumps(out))
'''


@dataclass
class SetupReport:
    device: str
    python: str  # the interpreter the device uses now (the venv's after an install)
    python_version: str | None = None
    machine: str | None = None
    found: dict[str, str | None] = field(default_factory=dict)  # module -> version, None if absent
    missing: list[str] = field(default_factory=list)  # pip packages still missing
    installed: list[str] = field(default_factory=list)
    venv: str | None = None
    inventory_updated: bool = False
    planned: list[str] = field(default_factory=list)  # commands run (or, with dry_run, that would run)
    manual: list[str] = field(default_factory=list)  # commands for the user when setup cannot install
    problems: list[str] = field(default_factory=list)
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe(link, python: str, timeout_s: float) -> dict[str, Any]:
    from .transport.ssh import _sh_path

    status, out, err = link.run(f"{_sh_path(python)} -c {shlex.quote(_PROBE)}", timeout_s=timeout_s)
    for line in out.splitlines():
        if line.startswith("EDGECOST_SETUP "):
            return json.loads(line[len("EDGECOST_SETUP "):])
    if status in (126, 127):
        why = "not found" if status == 127 else "not executable"
        raise AgentError(f"there is no Python at {python!r} on the device ({why})",
                         "install it there (Debian/Ubuntu: `sudo apt-get install python3 python3-venv python3-numpy`) "
                         "or name it with `edgecost devices add NAME --python PATH --replace`", kind="python_missing")
    why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
    if "SyntaxError" in err or "invalid syntax" in err:
        raise AgentError(f"the Python at {python!r} on the device is too old ({why})",
                         "edgecost needs Python >= 3.6 there", kind="python_too_old")
    raise AgentError(f"probing the Python at {python!r} on the device failed: {why}", "check that it runs")


def _platform_tag(info: dict[str, Any]) -> str:
    machine = {"arm64": "aarch64", "amd64": "x86_64"}.get((info.get("machine") or "").lower(),
                                                          (info.get("machine") or "x86_64").lower())
    libc, libc_version = (info.get("libc") or ["", ""])[:2]
    if libc == "glibc" and libc_version and machine in ("aarch64", "x86_64", "armv7l", "ppc64le", "s390x"):
        major, _, minor = libc_version.partition(".")
        return f"manylinux_{major}_{minor.split('.')[0] or 0}_{machine}"
    return f"linux_{machine}"


def manual_commands(name: str, info: dict[str, Any], packages: list[str]) -> list[str]:
    """What the user can run when the device cannot install from a package index."""
    if not packages:
        return []
    py = "".join(str(v) for v in info.get("version_info", [3, 6])[:2])
    dotted = ".".join(str(v) for v in info.get("version_info", [3, 6])[:2])
    pkgs = " ".join(packages)
    cmds = [
        f"pip download --only-binary=:all: --platform {_platform_tag(info)} --python-version {dotted} "
        f"--implementation cp --abi cp{py} -d edgecost-wheels-{name} {pkgs}   # here, on the host",
        f"edgecost devices setup {name} --wheels edgecost-wheels-{name}",
    ]
    apt = [p for p in ("python3-numpy" if "numpy" in packages else None,
                       None if info.get("modules", {}).get("ensurepip") else "python3-venv") if p]
    if apt:
        cmds.append(f"sudo apt-get install -y {' '.join(apt)}   # on the device (Debian, Ubuntu, Raspberry Pi OS, L4T)")
    return cmds


def setup_device(device, *, wheels: str | Path | None = None, install: bool = True, dry_run: bool = False,
                 inventory=None, pip_timeout_s: float = 900.0, on_step=None) -> SetupReport:
    """Check (and unless ``install`` is False or ``dry_run``, install) the agent's dependencies."""
    from .devices import Inventory
    from .transport.ssh import SshSession, _sh_path

    if device.kind != "ssh":
        raise UsageError(f"{device.name} is this machine", "install numpy and the runtime with pip here")
    say = on_step or (lambda text: None)
    wheel_files: list[Path] = []
    if wheels is not None:
        wheel_dir = Path(wheels).expanduser()
        wheel_files = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
        if not wheel_files:
            raise UsageError(f"no .whl files in {wheel_dir}", "pass the folder `pip download` wrote to")
    report = SetupReport(device=device.name, python=device.python)
    session = SshSession(device)
    try:
        link = session.connect()
        info = _probe(link, device.python, session.command_timeout_s)
        report.python_version, report.machine = info["version"], info.get("machine")
        report.found = dict(info["modules"])
        py = tuple(info["version_info"][:2])
        if py < (3, 6):
            raise AgentError(f"Python {info['version']} on {device.name} is too old for the agent",
                             "install Python >= 3.6 there and point --python at it", kind="python_too_old")
        modules, runtime_pkg = runtime_package(device.runtime, py)
        missing = [] if report.found.get("numpy") else ["numpy"]
        if not any(report.found.get(m) for m in modules):
            missing.append(runtime_pkg)
        say(f"{device.name}: Python {info['version']} ({info.get('machine')}) at {device.python}; "
            f"numpy {report.found.get('numpy') or 'missing'}; {device.runtime}: "
            f"{next((report.found[m] for m in modules if report.found.get(m)), None) or 'missing'}")
        if not missing:
            report.ok = True
            return report
        report.missing = list(missing)
        report.manual = manual_commands(device.name, info, missing)
        venv = f"{session.workdir}/venv"
        venv_python = f"{venv}/bin/python"
        report.venv = venv
        remote_wheels = f"{session.workdir}/wheels"
        steps: list[tuple[str, str]] = []
        if device.python != venv_python:
            steps.append(("venv", f"{_sh_path(device.python)} -m venv --system-site-packages {shlex.quote(venv)}"))
        source = (f"--no-index --find-links {shlex.quote(remote_wheels)}" if wheel_files
                  else "--timeout 20 --retries 1")
        steps.append(("pip install", f"{shlex.quote(venv_python)} -m pip install --disable-pip-version-check "
                      f"--no-input --progress-bar off {source} {' '.join(shlex.quote(p) for p in missing)}"))
        report.planned = [command for _, command in steps]
        if dry_run or not install:
            return report
        if device.python != venv_python and not info["modules"].get("ensurepip"):
            report.problems.append("the device's Python has no venv/ensurepip module (Debian: python3-venv)")
            return report
        if wheel_files:
            say(f"uploading {len(wheel_files)} wheels to {device.name}:{remote_wheels}")
            link.run(f"mkdir -p {shlex.quote(remote_wheels)}", timeout_s=session.command_timeout_s)
            for whl in wheel_files:
                session.put_file(whl, f"{remote_wheels}/{whl.name}")
        for label, step in steps:
            say(f"on {device.name}: {step}")
            status, out, err = link.run(step, timeout_s=pip_timeout_s)
            if status != 0:
                last = (err.strip().splitlines() or out.strip().splitlines() or [f"exit status {status}"])[-1]
                report.problems.append(f"{label} failed: {last.strip()}")
                return report
            if label == "venv" and info["prefix"] != info["base_prefix"]:
                # The device's python is itself a venv: the new one should still see its packages.
                _link_site_packages(link, venv_python, info["site_packages"], session.command_timeout_s)
        after = _probe(link, venv_python, session.command_timeout_s)
        still = [] if after["modules"].get("numpy") else ["numpy"]
        if not any(after["modules"].get(m) for m in modules):
            still.append(runtime_pkg)
        check = f"import numpy; import {next((m for m in modules if after['modules'].get(m)), modules[0])}"
        status, _, err = link.run(f"{shlex.quote(venv_python)} -c {shlex.quote(check)}", timeout_s=300.0)
        if status != 0 and not still:
            still.append(runtime_pkg)
            report.problems.append("the installed packages do not import: "
                                   + ((err.strip().splitlines() or ['?'])[-1]))
        report.found = dict(after["modules"])
        report.installed = [p for p in missing if p not in still]
        report.missing = still
        report.python = venv_python
        if not still:
            inv = inventory or Inventory()
            inv.add(replace(inv.get(device.name), python=venv_python), replace=True)
            report.inventory_updated = True
            report.ok = True
        return report
    finally:
        session.close()


def _link_site_packages(link, venv_python: str, dirs: list[str], timeout_s: float) -> None:
    code = ("import os, sysconfig; d = sysconfig.get_paths()['purelib']; "
            "open(os.path.join(d, 'edgecost-device-python.pth'), 'w').write('\\n'.join(%r) + '\\n')" % (list(dirs),))
    status, _, err = link.run(f"{shlex.quote(venv_python)} -c {shlex.quote(code)}", timeout_s=timeout_s)
    if status != 0:
        raise TransportError(f"cannot write a .pth file in {venv_python}'s venv: {err.strip()[-200:]}",
                             "check the work dir's permissions")
