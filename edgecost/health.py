"""`edgecost devices check`: can we reach the device, and is it fit to measure on?"""

from __future__ import annotations

import time
from typing import Any

from .campaign import device_warnings
from .errors import EdgecostError

_RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime"),
                    "torch": ("torch",)}


def check_device(device) -> dict[str, Any]:
    """Start the agent on the device and summarise what it reports. Never raises EdgecostError."""
    from .transport import open_session

    report: dict[str, Any] = {"device": device.name, "kind": device.kind, "host": device.host, "ok": False}
    t0 = time.monotonic()
    try:
        session = open_session(device)
        try:
            hello = session.start()
            report["session_setup_ms"] = round((time.monotonic() - t0) * 1000.0, 1)
            report["agent_version"] = hello.get("agent_version")
            report["python"] = hello.get("python")
            endpoint = getattr(session, "endpoint", None)
            if endpoint is not None:
                report["ssh"] = {"address": endpoint.address, "via": list(endpoint.proxy_jump),
                                 "workdir": session.workdir, "python_path": session.python}
            t1 = time.monotonic()
            facts = session.sysinfo()
            report["sysinfo_ms"] = round((time.monotonic() - t1) * 1000.0, 1)
        finally:
            session.close()
    except EdgecostError as exc:
        report["error"] = str(exc)
        report["error_kind"] = type(exc).__name__
        return report
    runtimes = {k: v.get("version") for k, v in (facts.get("runtimes") or {}).items()
                if isinstance(v, dict) and v.get("available")}
    report["runtimes"] = runtimes
    report["missing_runtimes"] = list(facts.get("missing_runtimes") or [])
    report["install_hints"] = {k: v.get("install_hint") for k, v in (facts.get("runtimes") or {}).items()
                               if isinstance(v, dict) and not v.get("available") and v.get("install_hint")}
    cpu = facts.get("cpu") or {}
    report["cpu"] = cpu.get("model_name")
    report["cores"] = cpu.get("logical_cores")
    report["governor"] = cpu.get("governor") or (", ".join(cpu.get("governors") or []) or None)
    report["memory_mb"] = round((facts.get("memory") or {}).get("total_mb") or 0) or None
    report["power_sensors"] = facts.get("power_sensors") or []
    report["max_temp_c"] = facts.get("max_temp_c")
    report["thermal_zones"] = len(facts.get("thermal_zones") or [])
    report["raspberry_pi"] = facts.get("raspberry_pi")
    report["machine"] = (facts.get("os") or {}).get("machine")
    report["jetson"] = facts.get("jetson")
    report["gpus"] = facts.get("gpus") or []
    report["os"] = facts.get("os")
    report["warnings"] = device_warnings(facts)
    have = [m for m in _RUNTIME_MODULES.get(device.runtime, ()) if runtimes.get(m)]
    report["default_runtime_available"] = bool(have)
    if "numpy" not in runtimes:
        report["error"] = (f"{device.name} has no NumPy for {report['python'] or 'its python'}; "
                           f"run `edgecost devices setup {device.name}`")
    elif not have:
        wanted = " or ".join(_RUNTIME_MODULES.get(device.runtime, (device.runtime,)))
        report["error"] = (f"{device.name} lacks {wanted}, needed by its default runtime {device.runtime}; "
                           f"run `edgecost devices setup {device.name}` or change --runtime")
    else:
        report["ok"] = True
    return report


def format_check(report: dict[str, Any]) -> str:
    lines = [f"[bold]{report['device']}[/bold] ({report['kind']}{', ' + report['host'] if report.get('host') else ''})"]
    if "session_setup_ms" in report:
        ssh = report.get("ssh") or {}
        via = f" via {', '.join(ssh['via'])}" if ssh.get("via") else ""
        lines.append(f"  agent {report.get('agent_version')} on Python {report.get('python')}"
                     f"{' (' + ssh['python_path'] + ')' if ssh.get('python_path') else ''}, "
                     f"session set up in {report['session_setup_ms']:.0f} ms"
                     f"{' over SSH to ' + ssh['address'] + via if ssh else ''}")
    for key, label in (("machine", "machine"), ("cpu", "cpu"), ("cores", "cores"), ("governor", "governor"),
                       ("memory_mb", "memory MB"), ("max_temp_c", "hottest die °C")):
        if report.get(key) is not None:
            lines.append(f"  {label}: {report[key]}")
    if report.get("runtimes"):
        lines.append("  runtimes: " + ", ".join(f"{k} {v}" for k, v in report["runtimes"].items()))
    if report.get("missing_runtimes"):
        hints = report.get("install_hints") or {}
        lines.append("  missing: " + ", ".join(f"{m} ({hints[m]})" if hints.get(m) else m
                                               for m in report["missing_runtimes"]))
    sensors = report.get("power_sensors") or []
    lines.append("  power sensors: " + (", ".join(f"{s.get('kind')}:{s.get('name') or s.get('label')}"
                                                    for s in sensors) if sensors else "none found"))
    if report.get("jetson"):
        lines.append(f"  jetson: {report['jetson']}")
    for w in report.get("warnings") or []:
        lines.append(f"  [yellow]warning:[/yellow] {w}")
    if report.get("error"):
        lines.append(f"  [red]error:[/red] {report['error']}")
    else:
        lines.append("  [green]ok[/green]")
    return "\n".join(lines)
