#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""edgecost device agent: measures neural-network inference on the device it runs on.

One self-contained file.  The edgecost host copies it to a device and runs it with the
device's own Python (3.6 or newer).  It needs the standard library and NumPy, plus
whichever runtime the device has: ``onnxruntime``, ``ai_edge_litert`` (or the older
``tflite_runtime``), ``torch``.  Runtimes are imported lazily; a missing one is reported
as an error of kind ``runtime_missing`` that names the package to install.

Commands (see ``device_agents/PROTOCOL.md`` in the edgecost repository for the contract):

    python3 edgecost_agent.py sysinfo            one JSON document: what this device is
    python3 edgecost_agent.py bench MODEL ...    one JSON document: one measurement
    python3 edgecost_agent.py serve              JSON lines on stdin/stdout, a whole campaign
    python3 edgecost_agent.py --version

Measurement semantics follow TFLite's ``benchmark_model``: warm-up runs, then timed runs
until both ``num_runs`` and ``min_secs`` are met, stopping at ``max_secs``.  Each bench
runs in a forked worker process so that a runtime that crashes or runs out of memory
kills only the worker.

Sections of this file: constants and errors; utils and stats; protobuf reader (ONNX
nodes); sensors (power/energy readers); sysinfo; runtimes and backends; bench; worker
isolation; serve; CLI.
"""

import argparse
import collections
import gc
import glob
import json
import math
import mmap
import os
import platform
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings as pywarnings
from contextlib import contextmanager

# Python >= 3.12 warns on every fork of a process with threads (NumPy's BLAS pool has
# some).  The workers are designed for that: they only use what they create after fork.
pywarnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                        category=DeprecationWarning)

# =====================================================================================
# Constants and errors
# =====================================================================================

AGENT_VERSION = "0.2.0"
PROTOCOL_VERSION = 1
SCHEMA_VERSION = 1

#: Every error kind the agent reports (``error.kind`` in a response).
ERROR_KINDS = (
    "bad_request",      # malformed line or arguments
    "model_not_found",  # model_path does not exist on the device
    "runtime_missing",  # the runtime cannot be imported here (message names the package)
    "model_rejected",   # the runtime refused to load the model
    "run_failed",       # loading worked, inference raised
    "crash",            # the worker died from a signal (SIGSEGV, SIGABRT, ...)
    "oom",              # MemoryError, allocation failure, or SIGKILL (the OOM killer)
    "timeout",          # the worker exceeded timeout_secs and was killed
    "internal_error",   # a bug in the agent itself (message carries the traceback)
)

#: Environment variable that prefixes every /proc, /sys and /etc path read (tests).
SYSROOT_ENV = "EDGECOST_AGENT_SYSROOT"

#: Environment variable that enables the ``test_hook`` bench argument (tests only).
TEST_HOOKS_ENV = "EDGECOST_AGENT_TEST_HOOKS"

#: pip package to install for each runtime, used in ``runtime_missing`` messages.
INSTALL_HINTS = {
    "numpy": "pip install numpy",
    "onnxruntime": "pip install onnxruntime",
    "tflite": "pip install ai-edge-litert (or, on Python < 3.9, pip install tflite-runtime)",
    "ai_edge_litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install tflite-runtime",
    "torch": "pip install torch",
}

QUIETER_HINT = (
    "to make the machine quieter: stop other programs, set the CPU governor to "
    "performance (sudo cpupower frequency-set -g performance; on a Jetson also "
    "sudo jetson_clocks), keep the device cool, and raise num_runs/min_secs"
)


class AgentFailure(Exception):
    """An error reported to the host as ``{"kind": ..., "message": ...}``.

    :param kind: one of ``ERROR_KINDS``
    :param message: one human-readable sentence saying what was wrong and what to do
    """

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message

    def to_dict(self):
        """:returns: dict -- the ``error`` object of a response."""
        return {"kind": self.kind, "message": self.message}


def bad_request(message):
    """:returns: AgentFailure -- a ``bad_request`` error with ``message``."""
    return AgentFailure("bad_request", message)


def log(message):
    """Write one human-readable log line to stderr (never to the protocol stream)."""
    try:
        sys.stderr.write("edgecost-agent: %s\n" % message)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# =====================================================================================
# Utils and stats
# =====================================================================================


def sysroot():
    """:returns: str -- the root under which /proc, /sys and /etc are read (default ``/``)."""
    return os.environ.get(SYSROOT_ENV) or "/"


def host_path(path, root=None):
    """Map an absolute device path (``/sys/...``) under the sysroot.

    :param path: str, absolute path as on a real device
    :param root: str or None, the sysroot (default: ``sysroot()``)
    :returns: str
    """
    root = root if root is not None else sysroot()
    if root in ("", "/"):
        return path
    return os.path.join(root, path.lstrip("/"))


def device_path(full_path, root=None):
    """Inverse of ``host_path``: the path as it reads on the device (for reports)."""
    root = root if root is not None else sysroot()
    if root in ("", "/"):
        return full_path
    root = root.rstrip("/")
    if full_path.startswith(root + "/"):
        return full_path[len(root):]
    return full_path


def read_text(path):
    """:returns: str or None -- the stripped content of a small file, None if unreadable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except (OSError, IOError):
        return None
    return data.decode("utf-8", "replace").strip().strip("\x00").strip()


def read_int(path):
    """:returns: int or None -- a file holding one integer, None if unreadable."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def natural_key(text):
    """Sort key that orders ``cpu2`` before ``cpu10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def run_tool(argv, timeout_secs=5.0):
    """Run an external tool (no shell) if it is on PATH.

    :param argv: list of str
    :param timeout_secs: float, the tool is killed after this long
    :returns: str or None -- its stdout, None if absent, failing or too slow
    """
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        proc = subprocess.Popen(
            [exe] + list(argv[1:]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, universal_newlines=True)
    except OSError:
        return None
    try:
        out, _ = proc.communicate(timeout=timeout_secs)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        return None
    return out


def finite_or_none(value, digits=6):
    """:returns: float or None -- ``value`` rounded, None when NaN/inf (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def percentile(sorted_values, q):
    """Percentile with linear interpolation (NumPy's default method).

    :param sorted_values: non-empty list of float, ascending
    :param q: float in [0, 100]
    :returns: float
    """
    n = len(sorted_values)
    if n == 1:
        return float(sorted_values[0])
    pos = (n - 1) * (q / 100.0)
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def latency_stats(samples_ms):
    """Summary statistics of the timed runs, as TFLite's benchmark_model reports them.

    ``std_ms`` is the population standard deviation (like benchmark_model).

    :param samples_ms: non-empty list of float, one per timed run, in ms
    :returns: OrderedDict -- n, median_ms, p10_ms, p90_ms, p95_ms, p99_ms, mean_ms, std_ms,
        min_ms, max_ms
    """
    values = sorted(float(v) for v in samples_ms)
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    out = collections.OrderedDict()
    out["n"] = n
    out["median_ms"] = finite_or_none(percentile(values, 50))
    out["p10_ms"] = finite_or_none(percentile(values, 10))
    out["p90_ms"] = finite_or_none(percentile(values, 90))
    out["p95_ms"] = finite_or_none(percentile(values, 95))
    out["p99_ms"] = finite_or_none(percentile(values, 99))
    out["mean_ms"] = finite_or_none(mean)
    out["std_ms"] = finite_or_none(math.sqrt(var))
    out["min_ms"] = finite_or_none(values[0])
    out["max_ms"] = finite_or_none(values[-1])
    return out


def spread_warnings(stats):
    """pyperf-style warnings about the timed runs.

    :param stats: dict from ``latency_stats``
    :returns: list of str
    """
    warnings = []
    median = stats["median_ms"] or 0.0
    if median <= 0:
        return warnings
    cv = (stats["std_ms"] or 0.0) / median
    if cv >= 0.10:
        warnings.append(
            "spread is high: std/median = %.0f%% (>= 10%%); the machine was busy or its "
            "clock changed during the runs; %s" % (cv * 100, QUIETER_HINT))
    if stats["max_ms"] > 3 * median:
        warnings.append(
            "max %.3f ms is %.1fx the median %.3f ms: some runs were interrupted (other "
            "processes, interrupts, throttling); %s"
            % (stats["max_ms"], stats["max_ms"] / median, median, QUIETER_HINT))
    if median < 0.05:
        warnings.append(
            "median %.1f us is below 50 us: clock resolution and the Python call overhead "
            "of the runtime dominate the value; measure a larger model or batch, or use the "
            "runtime's native benchmark tool" % (median * 1000.0))
    return warnings


def environment_warnings(env):
    """Warnings about the CPU governor, frequency and temperature during the timed runs.

    :param env: dict, the ``environment`` record of a bench result
    :returns: list of str
    """
    warnings = []
    governor = env.get("governor")
    if governor is not None and governor != "performance":
        warnings.append(
            "CPU governor is %r, not 'performance': frequency scaling adds noise and "
            "drift; set it with: sudo cpupower frequency-set -g performance (or write "
            "performance to /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)" % governor)
    f0 = env.get("cpu_freq_mhz_start") or []
    f1 = env.get("cpu_freq_mhz_end") or []
    if f0 and f1:
        top0, top1 = max(f0), max(f1)
        if top0 > 0 and abs(top1 - top0) / float(top0) >= 0.10:
            warnings.append(
                "CPU frequency changed during the timed runs (fastest core %.0f MHz at "
                "start, %.0f MHz at end): thermal throttling or power management; %s"
                % (top0, top1, QUIETER_HINT))
    t0, t1 = env.get("max_temp_c_start"), env.get("max_temp_c_end")
    if t0 is not None and t1 is not None and t1 - t0 >= 10.0:
        warnings.append(
            "temperature rose from %.1f C to %.1f C during the timed runs; the device may "
            "throttle: add cooling or let it cool down between measurements" % (t0, t1))
    elif t1 is not None and t1 >= 80.0:
        warnings.append(
            "temperature is %.1f C: the device may be throttling; add cooling or let it "
            "cool down between measurements" % t1)
    return warnings


def looks_like_oom(message):
    """:returns: bool -- whether a runtime's error message says memory ran out."""
    return bool(re.search(r"bad.alloc|failed to allocate|out of memory|cannot allocate memory",
                          message, re.IGNORECASE))


def describe_exception(exc):
    """:returns: str -- ``Type: message`` on one line, shortened."""
    text = "%s: %s" % (type(exc).__name__, exc)
    text = " ".join(text.split())
    return text if len(text) <= 2000 else text[:2000] + " ..."


# =====================================================================================
# Protobuf reader: the nodes of an ONNX model, without the onnx package
# =====================================================================================
#
# Wire format: each field is a varint key (field_number << 3 | wire_type) followed by a
# varint (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2), or
# 4 bytes (type 5).  We walk ModelProto -> graph (7) -> node (1) and skip everything
# else (initializers can be hundreds of MB) by its length, never decoding tensors.


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated or corrupt file)."""


_ATTR_TYPES = {
    0: "UNDEFINED", 1: "FLOAT", 2: "INT", 3: "STRING", 4: "TENSOR", 5: "GRAPH",
    6: "FLOATS", 7: "INTS", 8: "STRINGS", 9: "TENSORS", 10: "GRAPHS",
    11: "SPARSE_TENSOR", 12: "SPARSE_TENSORS", 13: "TYPE_PROTO", 14: "TYPE_PROTOS",
}


def _varint(buf, pos):
    """Decode a varint at ``pos``.  :returns: (int value, int next position)."""
    result = 0
    shift = 0
    try:
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise ProtobufError("varint longer than 10 bytes at offset %d" % pos)
    except IndexError:
        raise ProtobufError("truncated varint at offset %d (truncated file?)" % pos)


def _signed64(value):
    """Reinterpret a decoded varint as a two's-complement int64."""
    return value - (1 << 64) if value >= (1 << 63) else value


def _fields(buf, start, end):
    """Iterate the fields of the message in ``buf[start:end]``.

    :yields: (field_number, wire_type, value) -- value is the int for varints, else the
        (start, end) byte span of the payload
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0 at offset %d (corrupt file?)" % pos)
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value = (pos, pos + length)
            pos += length
        elif wire_type == 5:
            value = (pos, pos + 4)
            pos += 4
        elif wire_type == 1:
            value = (pos, pos + 8)
            pos += 8
        else:
            raise ProtobufError("unsupported wire type %d for field %d at offset %d"
                                % (wire_type, number, pos))
        if pos > end:
            raise ProtobufError("field %d runs past the end of its message (truncated file?)"
                                % number)
        yield number, wire_type, value


def _string(buf, span):
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _packed_varints(buf, span):
    out = []
    pos, end = span
    while pos < end:
        value, pos = _varint(buf, pos)
        out.append(_signed64(value))
    return out


def _tensor_summary(buf, span):
    """TensorProto -> ``{"dims": [...], "data_type": int}`` (the data is never read)."""
    dims = []
    data_type = 0
    for number, wire_type, value in _fields(buf, span[0], span[1]):
        if number == 1:
            if wire_type == 0:
                dims.append(_signed64(value))
            elif wire_type == 2:
                dims.extend(_packed_varints(buf, value))
        elif number == 2 and wire_type == 0:
            data_type = value
    return {"dims": dims, "data_type": data_type}


def _graph_summary(buf, span):
    """GraphProto (a subgraph attribute) -> ``{"name": str, "num_nodes": int}``."""
    name = ""
    num_nodes = 0
    for number, wire_type, value in _fields(buf, span[0], span[1]):
        if number == 1 and wire_type == 2:
            num_nodes += 1
        elif number == 2 and wire_type == 2:
            name = _string(buf, value)
    return {"name": name, "num_nodes": num_nodes}


def _parse_attribute(buf, span):
    """AttributeProto -> (name, plain value).

    Values: FLOAT float, INT int, STRING str (UTF-8), FLOATS/INTS/STRINGS lists,
    TENSOR ``{"tensor": {"dims", "data_type"}}``, GRAPH ``{"graph": {"name", "num_nodes"}}``,
    TENSORS/GRAPHS lists of those, anything else None.
    """
    name = ""
    attr_type = 0
    single = {}
    floats, ints, strings, tensors, graphs = [], [], [], [], []
    for number, wire_type, value in _fields(buf, span[0], span[1]):
        if number == 1 and wire_type == 2:
            name = _string(buf, value)
        elif number == 2 and wire_type == 5:
            single["f"] = struct.unpack_from("<f", buf, value[0])[0]
        elif number == 3 and wire_type == 0:
            single["i"] = _signed64(value)
        elif number == 4 and wire_type == 2:
            single["s"] = _string(buf, value)
        elif number == 5 and wire_type == 2:
            single["t"] = {"tensor": _tensor_summary(buf, value)}
        elif number == 6 and wire_type == 2:
            single["g"] = {"graph": _graph_summary(buf, value)}
        elif number == 7:
            if wire_type == 5:
                floats.append(struct.unpack_from("<f", buf, value[0])[0])
            elif wire_type == 2:
                count = (value[1] - value[0]) // 4
                floats.extend(struct.unpack_from("<%df" % count, buf, value[0]))
            single.setdefault("floats", True)
        elif number == 8:
            if wire_type == 0:
                ints.append(_signed64(value))
            elif wire_type == 2:
                ints.extend(_packed_varints(buf, value))
            single.setdefault("ints", True)
        elif number == 9 and wire_type == 2:
            strings.append(_string(buf, value))
            single.setdefault("strings", True)
        elif number == 10 and wire_type == 2:
            tensors.append({"tensor": _tensor_summary(buf, value)})
            single.setdefault("tensors", True)
        elif number == 11 and wire_type == 2:
            graphs.append({"graph": _graph_summary(buf, value)})
            single.setdefault("graphs", True)
        elif number == 20 and wire_type == 0:
            attr_type = value
    if attr_type == 0:  # very old models: infer the type from the field that is set
        for key, code in (("f", 1), ("i", 2), ("s", 3), ("t", 4), ("g", 5), ("floats", 6),
                          ("ints", 7), ("strings", 8), ("tensors", 9), ("graphs", 10)):
            if key in single:
                attr_type = code
                break
    kind = _ATTR_TYPES.get(attr_type, "UNDEFINED")
    if kind == "FLOAT":
        return name, single.get("f", 0.0)
    if kind == "INT":
        return name, single.get("i", 0)
    if kind == "STRING":
        return name, single.get("s", "")
    if kind == "TENSOR":
        return name, single.get("t")
    if kind == "GRAPH":
        return name, single.get("g")
    if kind == "FLOATS":
        return name, [float(v) for v in floats]
    if kind == "INTS":
        return name, ints
    if kind == "STRINGS":
        return name, strings
    if kind == "TENSORS":
        return name, tensors
    if kind == "GRAPHS":
        return name, graphs
    return name, None


def _parse_node(buf, span):
    """NodeProto -> dict(name, op_type, domain, inputs, outputs, attrs)."""
    node = collections.OrderedDict(
        [("name", ""), ("op_type", ""), ("domain", ""), ("inputs", []), ("outputs", []),
         ("attrs", collections.OrderedDict())])
    for number, wire_type, value in _fields(buf, span[0], span[1]):
        if wire_type != 2:
            continue
        if number == 1:
            node["inputs"].append(_string(buf, value))
        elif number == 2:
            node["outputs"].append(_string(buf, value))
        elif number == 3:
            node["name"] = _string(buf, value)
        elif number == 4:
            node["op_type"] = _string(buf, value)
        elif number == 7:
            node["domain"] = _string(buf, value)
        elif number == 5:
            attr_name, attr_value = _parse_attribute(buf, value)
            node["attrs"][attr_name] = attr_value
    return node


def parse_onnx_nodes(data):
    """The top-level graph nodes of a serialized ONNX ModelProto, in graph order.

    :param data: bytes, bytearray, memoryview or mmap holding the whole model
    :returns: list of dict -- name, op_type, domain, inputs, outputs, attrs
    :raises ProtobufError: on a truncated or corrupt file
    """
    buf = data if isinstance(data, memoryview) else memoryview(data)
    graphs = [value for number, wire_type, value in _fields(buf, 0, len(buf))
              if number == 7 and wire_type == 2]
    nodes = []
    for span in graphs:  # several graph fields merge, as protobuf merges messages
        for number, wire_type, value in _fields(buf, span[0], span[1]):
            if number == 1 and wire_type == 2:
                nodes.append(_parse_node(buf, value))
    return nodes


def read_onnx_nodes(path):
    """``parse_onnx_nodes`` on a file, memory-mapped (initializer pages are never touched).

    :param path: str, an ``.onnx`` file
    :returns: list of dict
    :raises ProtobufError: on a truncated or corrupt file; OSError if unreadable
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ProtobufError("%s is empty" % path)
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            view = memoryview(mapped)
            try:
                return parse_onnx_nodes(view)
            finally:
                view.release()
        finally:
            mapped.close()


# =====================================================================================
# Sensors: power and energy readers (zeus-style: one reader class per kind of sensor,
# discovered by probing sysfs in a fixed order; no sensor -> an empty list)
# =====================================================================================


class SensorError(RuntimeError):
    """A sensor could not be read (file gone, permission denied, garbage value)."""


def _read_sensor_int(path):
    value = read_int(path)
    if value is None:
        raise SensorError("cannot read %s (missing, or not readable by this user)" % path)
    return value


class Sensor(object):
    """Base of all readers.

    :param name: str, the sensor's label (RAPL zone name, INA3221 rail label, ...)
    :param paths: list of str, files read (under the sysroot)
    :param root: str, the sysroot the paths are under
    """

    kind = "sensor"
    unit = ""

    def __init__(self, name, paths, root):
        self.name = name
        self.paths = list(paths)
        self.root = root

    def readable(self):
        """:returns: bool -- whether this user can read every file of the sensor."""
        return all(os.access(p, os.R_OK) for p in self.paths)

    def describe(self):
        """:returns: dict -- kind, name, unit, paths (as on the device), readable."""
        return collections.OrderedDict([
            ("kind", self.kind), ("name", self.name), ("unit", self.unit),
            ("paths", [device_path(p, self.root) for p in self.paths]),
            ("readable", self.readable())])


class EnergyCounter(Sensor):
    """A cumulative energy counter in µJ that wraps to 0 after ``max_energy_range_uj``."""

    unit = "uJ"
    max_energy_range_uj = None

    def read_energy_uj(self):
        """:returns: int -- the counter now, in µJ.  :raises SensorError:"""
        raise NotImplementedError

    def energy_between_uj(self, start_uj, end_uj):
        """Energy between two readings of this counter, handling one wrap-around."""
        return energy_delta_uj(start_uj, end_uj, self.max_energy_range_uj)


class PowerMeter(Sensor):
    """An instantaneous power reading in mW (energy is its integral over time)."""

    unit = "mW"

    def read_power_mw(self):
        """:returns: float -- power now, in mW.  :raises SensorError:"""
        raise NotImplementedError


def energy_delta_uj(start_uj, end_uj, max_energy_range_uj):
    """Energy between two readings of a cumulative counter, with wrap-around.

    A counter that passed ``max_energy_range_uj`` restarted from 0, so ``end < start``
    means one wrap.  Two wraps cannot be told from one: read the counter at least once
    per wrap period (minutes for RAPL at full load).

    :param start_uj: int, reading at the start of the window
    :param end_uj: int, reading at the end
    :param max_energy_range_uj: int or None, the counter's range
    :returns: int -- µJ consumed in the window
    :raises SensorError: if the counter went backwards and its range is unknown
    """
    if end_uj >= start_uj:
        return end_uj - start_uj
    if not max_energy_range_uj:
        raise SensorError("energy counter went backwards (%d -> %d) and its range is unknown"
                          % (start_uj, end_uj))
    return end_uj + (max_energy_range_uj - start_uj)


def energy_from_power_mj(times_s, powers_mw):
    """Energy as the trapezoidal integral of power samples (for INA3221/hwmon meters).

    :param times_s: list of float, sample times in seconds (monotonic clock)
    :param powers_mw: list of float, power at those times in mW
    :returns: float -- mJ
    """
    total = 0.0
    for i in range(1, len(times_s)):
        total += (times_s[i] - times_s[i - 1]) * (powers_mw[i] + powers_mw[i - 1]) / 2.0
    return total


class RaplZone(EnergyCounter):
    """Intel/AMD RAPL powercap zone: ``/sys/class/powercap/intel-rapl:N[:M]/energy_uj``."""

    kind = "rapl"

    def __init__(self, zone_dir, root):
        name = read_text(os.path.join(zone_dir, "name")) or os.path.basename(zone_dir)
        parent = os.path.basename(zone_dir).rsplit(":", 1)[0]
        if parent.count(":") >= 1:  # a subzone (core, uncore, dram): prefix its package
            parent_name = read_text(os.path.join(os.path.dirname(zone_dir), parent, "name"))
            if parent_name:
                name = "%s/%s" % (parent_name, name)
        self.energy_path = os.path.join(zone_dir, "energy_uj")
        self.range_path = os.path.join(zone_dir, "max_energy_range_uj")
        Sensor.__init__(self, name, [self.energy_path, self.range_path], root)
        self.max_energy_range_uj = read_int(self.range_path)

    def read_energy_uj(self):
        return _read_sensor_int(self.energy_path)

    def describe(self):
        out = Sensor.describe(self)
        out["max_energy_range_uj"] = self.max_energy_range_uj
        return out


class Ina3221HwmonRail(PowerMeter):
    """Jetson INA3221 rail, newer L4T (hwmon): ``inN_label``, ``currN_input`` mA, ``inN_input`` mV."""

    kind = "jetson_ina3221"

    def __init__(self, label, current_path, voltage_path, root):
        self.current_path = current_path
        self.voltage_path = voltage_path
        Sensor.__init__(self, label, [current_path, voltage_path], root)

    def read_power_mw(self):
        current_ma = _read_sensor_int(self.current_path)
        voltage_mv = _read_sensor_int(self.voltage_path)
        return current_ma * voltage_mv / 1000.0


class Ina3221IioRail(PowerMeter):
    """Jetson INA3221 rail, older L4T (iio): ``rail_name_N``, ``in_powerN_input`` mW."""

    kind = "jetson_ina3221x"

    def __init__(self, label, power_path, root):
        self.power_path = power_path
        Sensor.__init__(self, label, [power_path], root)

    def read_power_mw(self):
        return float(_read_sensor_int(self.power_path))


class HwmonPower(PowerMeter):
    """Generic hwmon power sensor: ``powerN_input`` (or ``powerN_average``) in µW."""

    kind = "hwmon"

    def __init__(self, label, power_path, root):
        self.power_path = power_path
        Sensor.__init__(self, label, [power_path], root)

    def read_power_mw(self):
        return _read_sensor_int(self.power_path) / 1000.0


def probe_rapl(root):
    """:returns: list of RaplZone -- every powercap zone with an energy counter."""
    zones = []
    pattern = host_path("/sys/class/powercap/intel-rapl:*", root)
    for zone_dir in sorted(glob.glob(pattern), key=natural_key):
        if os.path.exists(os.path.join(zone_dir, "energy_uj")):
            zones.append(RaplZone(zone_dir, root))
    return zones


def _hwmon_dirs(root):
    """:returns: list of (real path, dir) -- hwmon devices, each once."""
    seen = set()
    out = []
    patterns = ("/sys/class/hwmon/hwmon*", "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")
    for pattern in patterns:
        for hwmon_dir in sorted(glob.glob(host_path(pattern, root)), key=natural_key):
            real = os.path.realpath(hwmon_dir)
            if real not in seen:
                seen.add(real)
                out.append(hwmon_dir)
    return out


def probe_jetson_ina3221_hwmon(root):
    """Newer L4T (Orin, Xavier on L4T >= 34): INA3221 under hwmon, rails found by label."""
    rails = []
    for hwmon_dir in _hwmon_dirs(root):
        if read_text(os.path.join(hwmon_dir, "name")) != "ina3221":
            continue
        labels = glob.glob(os.path.join(hwmon_dir, "in*_label"))
        for label_path in sorted(labels, key=natural_key):
            match = re.match(r"in(\d+)_label$", os.path.basename(label_path))
            label = read_text(label_path)
            if not match or not label or label.upper() == "NC":
                continue
            channel = match.group(1)
            current = os.path.join(hwmon_dir, "curr%s_input" % channel)
            voltage = os.path.join(hwmon_dir, "in%s_input" % channel)
            if os.path.exists(current) and os.path.exists(voltage):
                rails.append(Ina3221HwmonRail(label, current, voltage, root))
    return rails


def probe_jetson_ina3221_iio(root):
    """Older L4T (Nano, TX1, TX2, Xavier on L4T 32): ina3221x iio devices, rail_name_N."""
    rails = []
    pattern = host_path("/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*", root)
    for name_path in sorted(glob.glob(pattern), key=natural_key):
        label = read_text(name_path)
        channel = name_path.rsplit("_", 1)[1]
        power = os.path.join(os.path.dirname(name_path), "in_power%s_input" % channel)
        if label and label.upper() != "NC" and os.path.exists(power):
            rails.append(Ina3221IioRail(label, power, root))
    return rails


def probe_hwmon_power(root):
    """Any other hwmon device with ``powerN_input``/``powerN_average`` (µW)."""
    sensors = []
    for hwmon_dir in _hwmon_dirs(root):
        device_name = read_text(os.path.join(hwmon_dir, "name")) or os.path.basename(hwmon_dir)
        if device_name == "ina3221":
            continue
        channels = set()
        for path in glob.glob(os.path.join(hwmon_dir, "power*_input")) + glob.glob(
                os.path.join(hwmon_dir, "power*_average")):
            match = re.match(r"power(\d+)_(input|average)$", os.path.basename(path))
            if match:
                channels.add(match.group(1))
        for channel in sorted(channels, key=int):
            power = os.path.join(hwmon_dir, "power%s_input" % channel)
            if not os.path.exists(power):
                power = os.path.join(hwmon_dir, "power%s_average" % channel)
            label = read_text(os.path.join(hwmon_dir, "power%s_label" % channel))
            sensors.append(HwmonPower("%s/%s" % (device_name, label or "power%s" % channel),
                                      power, root))
    return sensors


#: Probing order: the first kinds are the most specific.
SENSOR_PROBES = (
    ("rapl", probe_rapl),
    ("jetson_ina3221", probe_jetson_ina3221_hwmon),
    ("jetson_ina3221x", probe_jetson_ina3221_iio),
    ("hwmon", probe_hwmon_power),
)


def discover_sensors(root=None):
    """All power/energy sensors of this device, in probing order.

    :param root: str or None, the sysroot (default: ``sysroot()``)
    :returns: list of Sensor -- empty where the hardware has none (no None checks needed)
    """
    root = root if root is not None else sysroot()
    sensors = []
    for _kind, probe in SENSOR_PROBES:
        try:
            sensors.extend(probe(root))
        except (OSError, IOError) as exc:
            log("sensor probe %s failed: %s" % (_kind, exc))
    return sensors


# =====================================================================================
# Sysinfo
# =====================================================================================

#: ARM "CPU implementer" -> {"CPU part" -> core name} (the parts seen on edge boards).
ARM_CPU_PARTS = {
    0x41: {
        0xb76: "ARM1176", 0xc07: "Cortex-A7", 0xc08: "Cortex-A8", 0xc09: "Cortex-A9",
        0xc0f: "Cortex-A15", 0xd01: "Cortex-A32", 0xd03: "Cortex-A53", 0xd04: "Cortex-A35",
        0xd05: "Cortex-A55", 0xd07: "Cortex-A57", 0xd08: "Cortex-A72", 0xd09: "Cortex-A73",
        0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76", 0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77",
        0xd0e: "Cortex-A76AE", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
        0xd42: "Cortex-A78AE", 0xd44: "Cortex-X1", 0xd46: "Cortex-A510",
        0xd47: "Cortex-A710", 0xd48: "Cortex-X2", 0xd49: "Neoverse-N2",
        0xd4b: "Cortex-A78C", 0xd4d: "Cortex-A715", 0xd4e: "Cortex-X3",
        0xd4f: "Neoverse-V2", 0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4",
    },
    0x4e: {0x003: "Denver 2", 0x004: "Carmel"},
    0x51: {0x800: "Kryo 2xx Gold", 0x801: "Kryo 2xx Silver", 0x802: "Kryo 3xx Gold",
           0x803: "Kryo 3xx Silver", 0x804: "Kryo 4xx Gold", 0x805: "Kryo 4xx Silver"},
    0x61: {},
}

#: Thermal zones whose value is not a die temperature (constant or estimated).
NON_DIE_THERMAL_ZONES = ("pmic-die", "thermal-fan-est")

RUNTIME_PROBE_NAMES = ("numpy", "onnxruntime", "ai_edge_litert", "tflite_runtime", "torch")
RUNTIME_PROBE_TIMEOUT_SECS = 60.0
AGENT_FILE = os.path.abspath(__file__)

# Imports this file in a fresh interpreter and runs its probe_one_runtime(argv[2]).
_RUNTIME_PROBE_SRC = r'''
import importlib.util, json, sys
sys.dont_write_bytecode = True
spec = importlib.util.spec_from_file_location("edgecost_agent_probe", sys.argv[1])
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)
sys.stdout.write("\nEDGECOST_PROBE " + json.dumps(agent.probe_one_runtime(sys.argv[2])) + "\n")
'''


def parse_key_value_file(text, sep="="):
    """Parse ``KEY=value`` lines (os-release style, quotes removed)."""
    out = collections.OrderedDict()
    for line in (text or "").splitlines():
        if sep not in line or line.lstrip().startswith("#"):
            continue
        key, value = line.split(sep, 1)
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def _parse_cpuinfo(text):
    """/proc/cpuinfo -> (list of per-processor dicts, dict of global keys)."""
    processors = []
    global_keys = collections.OrderedDict()
    current = None
    for line in (text or "").splitlines():
        if ":" not in line:
            current = None
            continue
        key, value = [part.strip() for part in line.split(":", 1)]
        if key == "processor":
            current = collections.OrderedDict()
            processors.append(current)
        if current is not None:
            current[key] = value
        else:
            global_keys[key] = value
    return processors, global_keys


def _arm_core_name(implementer, part):
    try:
        impl = int(implementer, 16)
        part_no = int(part, 16)
    except (TypeError, ValueError):
        return None
    name = ARM_CPU_PARTS.get(impl, {}).get(part_no)
    return name or "ARM implementer 0x%02x part 0x%03x" % (impl, part_no)


def cpu_info(root=None):
    """CPU model, cores, frequencies and governors.

    Handles x86 (``model name``), 64-bit ARM (``CPU implementer``/``CPU part``, no model
    name), and 32-bit Raspberry Pi kernels (``model name`` + ``Hardware``).

    :returns: OrderedDict
    """
    root = root if root is not None else sysroot()
    processors, global_keys = _parse_cpuinfo(read_text(host_path("/proc/cpuinfo", root)))
    out = collections.OrderedDict()
    model_name = None
    for proc in processors:
        if proc.get("model name"):
            model_name = proc["model name"]
            break
    core_counts = collections.OrderedDict()
    for proc in processors:
        if "CPU part" in proc:
            name = _arm_core_name(proc.get("CPU implementer"), proc.get("CPU part"))
            core_counts[name] = core_counts.get(name, 0) + 1
    cores = [{"core": name, "count": count} for name, count in core_counts.items()]
    raw_name = model_name or global_keys.get("model name") or global_keys.get("Processor")
    if cores and (model_name is None or re.match(r"ARMv\d", model_name)):
        # ARM kernels say "ARMv8 Processor rev 1 (v8l)" or nothing: name the cores instead
        model_name = " + ".join(
            ("%dx %s" % (c["count"], c["core"])) if len(cores) > 1 else c["core"] for c in cores)
    out["model_name"] = model_name or raw_name or platform.processor() or None
    out["cpuinfo_model_name"] = raw_name
    out["arm_cores"] = cores or None
    out["hardware"] = global_keys.get("Hardware")
    flags = (processors[0].get("flags") or processors[0].get("Features") or "") if processors else ""
    out["isa_features"] = [f for f in flags.split() if f in (
        "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "fma", "f16c",
        "neon", "asimd", "asimdhp", "asimddp", "fphp", "sve", "sve2", "i8mm", "bf16")]
    out["logical_cores"] = len(processors) or os.cpu_count()
    try:
        out["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        out["usable_cores"] = os.cpu_count()
    out["online"] = read_text(host_path("/sys/devices/system/cpu/online", root))
    out["freqs"] = cpu_freqs(root)
    governors = [f["governor"] for f in out["freqs"] if f.get("governor")]
    out["governors"] = sorted(set(governors))
    out["governor"] = common_governor(governors)
    return out


def common_governor(governors):
    """:returns: str or None -- the governor if all cores agree, ``"mixed"`` otherwise."""
    distinct = set(g for g in governors if g)
    if not distinct:
        return None
    if len(distinct) == 1:
        return distinct.pop()
    return "mixed"


def cpu_freqs(root=None):
    """Per-core cpufreq facts in MHz (sysfs reports kHz).

    :returns: list of OrderedDict -- cpu, cur_mhz, min_mhz, max_mhz, governor
    """
    root = root if root is not None else sysroot()
    out = []
    pattern = host_path("/sys/devices/system/cpu/cpu[0-9]*", root)
    for cpu_dir in sorted(glob.glob(pattern), key=natural_key):
        freq_dir = os.path.join(cpu_dir, "cpufreq")
        if not os.path.isdir(freq_dir):
            continue

        def mhz(*names):
            for name in names:
                khz = read_int(os.path.join(freq_dir, name))
                if khz is not None:
                    return khz / 1000.0
            return None

        out.append(collections.OrderedDict([
            ("cpu", int(re.sub(r"\D", "", os.path.basename(cpu_dir)))),
            ("cur_mhz", mhz("scaling_cur_freq", "cpuinfo_cur_freq")),
            ("min_mhz", mhz("cpuinfo_min_freq", "scaling_min_freq")),
            ("max_mhz", mhz("cpuinfo_max_freq", "scaling_max_freq")),
            ("governor", read_text(os.path.join(freq_dir, "scaling_governor"))),
        ]))
    return out


def thermal_zones(root=None):
    """:returns: list of OrderedDict -- zone, type, temp_c (readable zones only)."""
    root = root if root is not None else sysroot()
    out = []
    pattern = host_path("/sys/class/thermal/thermal_zone*", root)
    for zone_dir in sorted(glob.glob(pattern), key=natural_key):
        millideg = read_int(os.path.join(zone_dir, "temp"))
        if millideg is None:
            continue
        out.append(collections.OrderedDict([
            ("zone", os.path.basename(zone_dir)),
            ("type", read_text(os.path.join(zone_dir, "type"))),
            ("temp_c", millideg / 1000.0)]))
    return out


def max_die_temp_c(zones):
    """:returns: float or None -- hottest plausible die temperature of ``thermal_zones()``."""
    temps = [z["temp_c"] for z in zones
             if (z.get("type") or "").lower() not in NON_DIE_THERMAL_ZONES
             and -40.0 < z["temp_c"] < 150.0]
    return max(temps) if temps else None


def read_environment(root=None):
    """A cheap snapshot taken around the timed runs.

    :returns: dict -- governor, cpu_freq_mhz (per core), max_temp_c
    """
    root = root if root is not None else sysroot()
    freqs = cpu_freqs(root)
    return {
        "governor": common_governor([f["governor"] for f in freqs]),
        "cpu_freq_mhz": [f["cur_mhz"] for f in freqs if f["cur_mhz"] is not None],
        "max_temp_c": max_die_temp_c(thermal_zones(root)),
    }


def memory_info(root=None):
    """:returns: OrderedDict -- total_mb, available_mb from /proc/meminfo."""
    root = root if root is not None else sysroot()
    info = parse_key_value_file(read_text(host_path("/proc/meminfo", root)), sep=":")

    def mb(key):
        try:
            return int(info[key].split()[0]) / 1024.0
        except (KeyError, ValueError, IndexError):
            return None

    return collections.OrderedDict([("total_mb", mb("MemTotal")),
                                    ("available_mb", mb("MemAvailable"))])


def board_info(root=None):
    """:returns: OrderedDict -- model (device tree, else DMI), source."""
    root = root if root is not None else sysroot()
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        model = read_text(host_path(path, root))
        if model:
            return collections.OrderedDict([("model", model), ("source", path)])
    vendor = read_text(host_path("/sys/class/dmi/id/sys_vendor", root))
    product = read_text(host_path("/sys/class/dmi/id/product_name", root))
    if product:
        model = ("%s %s" % (vendor, product)) if vendor else product
        return collections.OrderedDict([("model", model), ("source", "/sys/class/dmi/id")])
    return collections.OrderedDict([("model", None), ("source", None)])


def jetson_info(root=None, board_model=None):
    """L4T release and nvpmodel power mode, or None when this is not a Jetson."""
    root = root if root is not None else sysroot()
    release_text = read_text(host_path("/etc/nv_tegra_release", root))
    if release_text is None and "jetson" not in (board_model or "").lower():
        return None
    out = collections.OrderedDict([("l4t_release", None), ("nv_tegra_release", None),
                                   ("power_mode", None), ("power_mode_id", None)])
    if release_text:
        first = release_text.splitlines()[0]
        out["nv_tegra_release"] = first
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first)
        if match:
            out["l4t_release"] = "%s.%s" % (match.group(1), match.group(2))
    text = run_tool(["nvpmodel", "-q"], timeout_secs=5.0)
    if text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            match = re.match(r"NV Power Mode:\s*(.+)$", line)
            if match:
                out["power_mode"] = match.group(1).strip()
                if i + 1 < len(lines) and lines[i + 1].isdigit():
                    out["power_mode_id"] = int(lines[i + 1])
    return out


#: Bits of ``vcgencmd get_throttled``.
RPI_THROTTLE_BITS = (
    (0, "under_voltage"), (1, "arm_freq_capped"), (2, "throttled"), (3, "soft_temp_limit"),
    (16, "under_voltage_occurred"), (17, "arm_freq_capped_occurred"),
    (18, "throttled_occurred"), (19, "soft_temp_limit_occurred"))


def raspberry_pi_info():
    """``vcgencmd get_throttled`` decoded, or None when vcgencmd is absent."""
    text = run_tool(["vcgencmd", "get_throttled"], timeout_secs=5.0)
    if not text:
        return None
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
    if not match:
        return None
    value = int(match.group(1), 16)
    flags = [name for bit, name in RPI_THROTTLE_BITS if value & (1 << bit)]
    return collections.OrderedDict([("throttled", match.group(1)), ("throttled_flags", flags)])


def gpu_info():
    """NVIDIA GPUs from nvidia-smi, or an empty list."""
    text = run_tool(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                     "--format=csv,noheader"], timeout_secs=10.0)
    gpus = []
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0]:
            continue
        match = re.match(r"([\d.]+)", parts[2])
        gpus.append(collections.OrderedDict([
            ("name", parts[0]), ("driver_version", parts[1]),
            ("memory_total_mb", float(match.group(1)) if match else None)]))
    return gpus


def probe_one_runtime(name):
    """Import one runtime here and describe it (``probe_runtimes`` runs it in a subprocess).

    :returns: dict -- {available, version, ...} or {available: False, error}
    """
    info = {}
    try:
        if name == "onnxruntime":
            import onnxruntime as mod
            info["providers"] = list(mod.get_available_providers())
        elif name == "ai_edge_litert":
            import ai_edge_litert as mod
            import ai_edge_litert.interpreter  # noqa: F401
        elif name == "tflite_runtime":
            import tflite_runtime as mod
            import tflite_runtime.interpreter  # noqa: F401
        elif name == "torch":
            import torch as mod
            info["num_threads"] = int(mod.get_num_threads())
            info["cuda_available"] = bool(mod.cuda.is_available())
        else:
            mod = __import__(name)
        info["available"] = True
        info["version"] = str(getattr(mod, "__version__", "unknown"))
    except Exception as exc:  # any import failure means "not usable here"
        info = {"available": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    return info


def probe_runtimes_without_exec(timeout_secs=RUNTIME_PROBE_TIMEOUT_SECS):
    """The runtime probe where this interpreter cannot be started again (``exec`` fails).

    Under qemu user emulation without binfmt_misc, ``sys.executable`` is an aarch64 binary
    the kernel cannot exec ("Exec format error"), but ``fork`` works: each runtime is
    imported in a forked child (so a crashing import still kills only the child), or in
    this process where ``fork`` does not exist either.

    :returns: OrderedDict -- as ``probe_runtimes``
    """
    out = collections.OrderedDict()
    for name in RUNTIME_PROBE_NAMES:
        if not can_fork():
            out[name] = probe_one_runtime(name)
            continue
        try:
            payload = run_in_worker(probe_one_runtime, name, timeout_secs,
                                    activity="importing %s" % name)
        except AgentFailure as exc:
            out[name] = {"available": False, "error": "importing %s failed: %s"
                         % (name, exc.message)}
            continue
        if payload.get("ok"):
            out[name] = payload["result"]
        else:
            out[name] = {"available": False, "error": (payload.get("error") or {}).get(
                "message", "the probe failed")}
    return out


def probe_runtimes(timeout_secs=RUNTIME_PROBE_TIMEOUT_SECS):
    """Import each runtime in a subprocess of this interpreter (in parallel, with a timeout).

    A runtime whose import segfaults (it happens under emulation, or with a wheel built
    for another CPU) kills only its probe.  Where the interpreter cannot be spawned at
    all (an ``OSError`` such as "Exec format error" under qemu user emulation), the probe
    falls back to ``probe_runtimes_without_exec``.

    :returns: OrderedDict -- name -> {available, version, ...} or {available: False, error}
    """
    procs = collections.OrderedDict()
    for name in RUNTIME_PROBE_NAMES:
        try:
            procs[name] = subprocess.Popen(
                [sys.executable, "-c", _RUNTIME_PROBE_SRC, AGENT_FILE, name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        except OSError as exc:
            log("cannot start %s to probe runtimes (%s): probing without exec"
                % (sys.executable, describe_exception(exc)))
            for proc in procs.values():
                proc.kill()
                proc.communicate()
            out = probe_runtimes_without_exec(timeout_secs)
            for probe_name, info in out.items():
                if not info.get("available"):
                    info["install_hint"] = INSTALL_HINTS.get(probe_name)
            return out
    deadline = time.monotonic() + timeout_secs
    out = collections.OrderedDict()
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out[name] = {"available": False,
                         "error": "importing %s took longer than %.0f s" % (name, timeout_secs)}
            continue
        if proc.returncode < 0:
            out[name] = {"available": False, "error": "importing %s crashed the interpreter "
                         "with %s" % (name, signal_name(-proc.returncode))}
            continue
        info = None
        for line in stdout.splitlines():
            if line.startswith("EDGECOST_PROBE "):
                try:
                    info = json.loads(line[len("EDGECOST_PROBE "):])
                except ValueError:
                    info = None
        if info is None:
            tail = " ".join((stderr or "").strip().splitlines()[-1:])
            info = {"available": False, "error": "probe exited with status %s %s"
                    % (proc.returncode, tail)}
        out[name] = info
    for name, info in out.items():
        if not info.get("available"):
            info["install_hint"] = INSTALL_HINTS.get(name)
    return out


def sysinfo(probe=True, runtimes=None):
    """Everything the host wants to know about this device.

    :param probe: bool, probe the runtimes (subprocesses, up to a few seconds)
    :param runtimes: dict or None, an earlier ``probe_runtimes()`` result to reuse
    :returns: OrderedDict
    """
    root = sysroot()
    os_release = parse_key_value_file(read_text(host_path("/etc/os-release", root)))
    board = board_info(root)
    info = collections.OrderedDict()
    info["schema_version"] = SCHEMA_VERSION
    info["agent_version"] = AGENT_VERSION
    info["protocol_version"] = PROTOCOL_VERSION
    info["hostname"] = socket.gethostname()
    info["os"] = collections.OrderedDict([
        ("system", platform.system()), ("release", platform.release()),
        ("machine", platform.machine()),
        ("distro", os_release.get("PRETTY_NAME") or os_release.get("NAME")),
        ("distro_id", os_release.get("ID")), ("distro_version", os_release.get("VERSION_ID"))])
    info["python"] = collections.OrderedDict([
        ("version", platform.python_version()), ("implementation",
                                                 platform.python_implementation()),
        ("executable", sys.executable)])
    info["cpu"] = cpu_info(root)
    info["memory"] = memory_info(root)
    info["board"] = board
    info["jetson"] = jetson_info(root, board.get("model"))
    info["raspberry_pi"] = raspberry_pi_info()
    zones = thermal_zones(root)
    info["thermal_zones"] = zones
    info["max_temp_c"] = max_die_temp_c(zones)
    info["gpus"] = gpu_info()
    info["power_sensors"] = [s.describe() for s in discover_sensors(root)]
    if runtimes is None and probe:
        runtimes = probe_runtimes()
    info["runtimes"] = runtimes
    if runtimes is not None:
        info["missing_runtimes"] = [n for n, r in runtimes.items() if not r.get("available")]
        have = set(n for n, r in runtimes.items() if r.get("available"))
        available = []
        if "onnxruntime" in have:
            available.append("onnxruntime")
        if "ai_edge_litert" in have or "tflite_runtime" in have:
            available.append("tflite")
        if "torch" in have:
            available.append("torch")
        info["available_runtimes"] = available if "numpy" in have else []
    else:
        info["missing_runtimes"] = None
        info["available_runtimes"] = None
    info["isolation"] = hasattr(os, "fork")
    info["timer_resolution_ns"] = time.get_clock_info("perf_counter").resolution * 1e9
    return info


# =====================================================================================
# Runtimes and backends
# =====================================================================================

RUNTIMES = ("onnxruntime", "tflite", "torch")
RUNTIME_ALIASES = {"ort": "onnxruntime", "litert": "tflite", "ai_edge_litert": "tflite",
                   "tflite_runtime": "tflite", "pytorch": "torch"}
SUFFIX_RUNTIME = {".onnx": "onnxruntime", ".tflite": "tflite", ".pt": "torch",
                  ".pth": "torch", ".pt2": "torch"}
ORT_LEVELS = collections.OrderedDict([
    ("disable", "ORT_DISABLE_ALL"), ("basic", "ORT_ENABLE_BASIC"),
    ("extended", "ORT_ENABLE_EXTENDED"), ("all", "ORT_ENABLE_ALL")])
PRECISIONS = ("fp32", "fp16", "int8")

#: runtime -> (module object, module name, version); filled by ``import_runtime``.
_RUNTIME_CACHE = {}


def import_numpy():
    """:returns: module -- numpy.  :raises AgentFailure: runtime_missing."""
    try:
        import numpy
        import numpy.random  # lazily imported by NumPy 2; import it before forking workers
    except ImportError as exc:
        raise AgentFailure("runtime_missing", "numpy is not importable here (%s); install it "
                           "with: %s" % (describe_exception(exc), INSTALL_HINTS["numpy"]))
    return numpy


def import_runtime(runtime):
    """Import a runtime once per process (lazily: only when a bench needs it).

    :param runtime: str, one of ``RUNTIMES``
    :returns: (module, module_name, version) -- for tflite the ``interpreter`` module of
        ``ai_edge_litert`` (preferred) or ``tflite_runtime``
    :raises AgentFailure: runtime_missing, naming the pip package
    """
    cached = _RUNTIME_CACHE.get(runtime)
    if cached is not None:
        return cached
    import_numpy()
    errors = []
    entry = None
    if runtime == "onnxruntime":
        try:
            import onnxruntime
            entry = (onnxruntime, "onnxruntime", str(onnxruntime.__version__))
        except ImportError as exc:
            errors.append(describe_exception(exc))
    elif runtime == "tflite":
        for package in ("ai_edge_litert", "tflite_runtime"):
            try:
                top = __import__(package)
                interpreter = __import__(package + ".interpreter", fromlist=["Interpreter"])
                entry = (interpreter, package, str(getattr(top, "__version__", "unknown")))
                break
            except ImportError as exc:
                errors.append("%s: %s" % (package, describe_exception(exc)))
    elif runtime == "torch":
        try:
            import torch
            entry = (torch, "torch", str(torch.__version__))
        except ImportError as exc:
            errors.append(describe_exception(exc))
    else:
        raise bad_request("unknown runtime %r; use one of: %s" % (runtime, ", ".join(RUNTIMES)))
    if entry is None:
        raise AgentFailure("runtime_missing", "%s is not importable here (%s); install it with: %s"
                           % (runtime, "; ".join(errors), INSTALL_HINTS[runtime]))
    _RUNTIME_CACHE[runtime] = entry
    return entry


def make_random_input(np, shape, dtype, rng, name="input"):
    """Random data for one input: floats standard normal, ints in [0, 10), bools.

    :param np: the numpy module
    :param shape: list of int
    :param dtype: anything ``np.dtype`` accepts
    :param rng: numpy RandomState
    :returns: numpy.ndarray
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.asarray(rng.standard_normal(size=tuple(shape))).astype(dt)
    if dt.kind in "iu":
        return np.asarray(rng.randint(0, 10, size=tuple(shape))).astype(dt)
    if dt.kind == "b":
        return np.asarray(rng.randint(0, 2, size=tuple(shape))).astype(bool)
    raise bad_request("input %r has dtype %s, for which the agent cannot make random data"
                      % (name, dt))


def resolve_shape(name, model_shape, override, resizable):
    """The concrete shape of one input.

    :param name: str, input name
    :param model_shape: list (int for fixed dims; None, str or negative for dynamic) or None
    :param override: list of int or None, from ``input_shapes``
    :param resizable: bool, the runtime can change fixed dims (LiteRT) or not (ORT)
    :returns: list of int
    :raises AgentFailure: bad_request naming the input and dimension
    """
    if override is not None:
        if model_shape is not None and len(model_shape) != len(override):
            raise bad_request("input_shapes[%r] has %d dims but the model's input has %d (%s)"
                              % (name, len(override), len(model_shape), list(model_shape)))
        if not resizable and model_shape is not None:
            for i, (dim, want) in enumerate(zip(model_shape, override)):
                if isinstance(dim, int) and dim >= 0 and dim != want:
                    raise bad_request("input %r dimension %d is fixed at %d in the model; "
                                      "input_shapes says %d" % (name, i, dim, want))
        return list(override)
    if model_shape is None:
        raise bad_request("input %r has an unknown rank; give its shape in input_shapes, e.g. "
                          "{%r: [1, 3, 224, 224]}" % (name, name))
    for i, dim in enumerate(model_shape):
        if not isinstance(dim, int) or dim < 0:
            raise bad_request("input %r has a dynamic dimension %d (%s) in shape %s; fix it "
                              "with input_shapes, e.g. {%r: %s}"
                              % (name, i, dim if dim is not None else "unnamed",
                                 list(model_shape), name,
                                 [d if isinstance(d, int) and d >= 0 else 1 for d in model_shape]))
    return [int(d) for d in model_shape]


class Backend(object):
    """One runtime's view of a model: load it, run it once per ``run()`` call.

    Subclasses set ``inputs`` (list of {name, shape, dtype}), ``init_ms`` and ``info``
    (runtime-specific result fields).

    :param opts: dict, validated bench options (``parse_bench_args``)
    """

    runtime = ""

    def __init__(self, opts):
        self.opts = opts
        self.inputs = []
        self.init_ms = None
        self.info = collections.OrderedDict()
        self.np = import_numpy()
        self.rng = self.np.random.RandomState(opts["seed"])

    def load(self):
        """Create the session/interpreter and prepare inputs.  :raises AgentFailure:"""
        raise NotImplementedError

    def run(self):
        """One inference (the only thing timed)."""
        raise NotImplementedError

    @contextmanager
    def running(self):
        """Context around all runs (torch enters inference mode here)."""
        yield

    def close(self):
        """Release the session."""


class OrtBackend(Backend):
    """ONNX Runtime: one sequential session, ``intra_op_num_threads=threads``."""

    runtime = "onnxruntime"

    def _session_options(self, ort, profile_dir=None):
        opts = self.opts
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts["threads"]
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                              ORT_LEVELS[opts["ort_optimization_level"]])
        if profile_dir is not None:
            so.enable_profiling = True
            try:
                so.profile_file_prefix = os.path.join(profile_dir, "profile")
            except AttributeError:  # onnxruntime < 1.4 writes to the cwd; removed after
                pass
            so.optimized_model_filepath = os.path.join(profile_dir, "optimized.onnx")
            so.log_severity_level = 3  # the NCHWc "hardware specific" warning is expected
        return so

    def _providers(self, ort):
        wanted = self.opts["providers"] or ["CPUExecutionProvider"]
        available = list(ort.get_available_providers())
        missing = [p for p in wanted if p not in available]
        if missing:
            raise bad_request("execution provider(s) %s not available in this onnxruntime "
                              "(available: %s)" % (", ".join(missing), ", ".join(available)))
        return wanted

    def _create_session(self, ort, so, providers):
        try:
            return ort.InferenceSession(self.opts["model_path"], so, providers=providers)
        except MemoryError:
            raise
        except Exception as exc:  # the runtime's own exception types vary by version
            message = describe_exception(exc)
            if looks_like_oom(message):
                raise AgentFailure("oom", "onnxruntime ran out of memory loading the model: "
                                   + message)
            raise AgentFailure("model_rejected", "onnxruntime refused the model: " + message)

    def load(self):
        ort, module_name, version = import_runtime("onnxruntime")
        providers = self._providers(ort)
        so = self._session_options(ort)
        t0 = time.perf_counter()
        self.session = self._create_session(ort, so, providers)
        self.init_ms = (time.perf_counter() - t0) * 1e3
        self.feed = self._make_feed(self.session)
        self.output_names = [o.name for o in self.session.get_outputs()]
        used = list(self.session.get_providers())
        self.info["runtime_version"] = version
        self.info["runtime_module"] = module_name
        self.info["provider"] = used[0] if used else None
        self.info["providers"] = used
        self.info["ort_optimization_level"] = self.opts["ort_optimization_level"]

    def _make_feed(self, session):
        feed = collections.OrderedDict()
        self.inputs = []
        overrides = self.opts["input_shapes"]
        names = [i.name for i in session.get_inputs()]
        unknown = [n for n in overrides if n not in names]
        if unknown:
            raise bad_request("input_shapes names %s, but the model's inputs are %s"
                              % (unknown, names))
        for inp in session.get_inputs():
            dtype = ORT_DTYPES.get(inp.type)
            if dtype is None:
                raise bad_request("input %r has type %s, for which the agent cannot make "
                                  "random data" % (inp.name, inp.type))
            model_shape = list(inp.shape) if inp.shape is not None else None
            shape = resolve_shape(inp.name, model_shape, overrides.get(inp.name), False)
            feed[inp.name] = make_random_input(self.np, shape, dtype, self.rng, inp.name)
            self.inputs.append(collections.OrderedDict(
                [("name", inp.name), ("shape", shape), ("dtype", dtype)]))
        return feed

    def run(self):
        self.session.run(self.output_names, self.feed)

    def close(self):
        self.session = None

    def profile(self, profile_runs):
        """Per-node times from a separate profiling session, and the optimized graph.

        Runs after the timed runs, so profiling overhead never enters the timed stats.

        :param profile_runs: int, profiled runs (after one warm-up run)
        :returns: (node_profile list, optimized_nodes list, warnings list)
        """
        ort, _module, _version = import_runtime("onnxruntime")
        tmp_dir = tempfile.mkdtemp(prefix="edgecost-profile-")
        warnings = []
        try:
            so = self._session_options(ort, profile_dir=tmp_dir)
            session = self._create_session(ort, so, self.info["providers"])
            try:
                session.run(self.output_names, self.feed)  # warm-up, excluded below
                for _ in range(profile_runs):
                    session.run(self.output_names, self.feed)
            except MemoryError:
                raise
            except Exception as exc:
                raise AgentFailure("run_failed", "onnxruntime failed in the profiling "
                                   "session: " + describe_exception(exc))
            profile_path = os.path.abspath(session.end_profiling())
            session = None
            try:
                with open(profile_path) as fh:
                    events = json.load(fh)
                node_profile = aggregate_ort_profile(events, skip_runs=1)
            except (OSError, IOError, ValueError) as exc:
                node_profile = []
                warnings.append("could not read the onnxruntime profile: "
                                + describe_exception(exc))
            finally:
                if os.path.dirname(profile_path) != tmp_dir and os.path.isfile(profile_path):
                    os.remove(profile_path)
            optimized_path = os.path.join(tmp_dir, "optimized.onnx")
            try:
                optimized_nodes = read_onnx_nodes(optimized_path)
            except (OSError, IOError, ProtobufError) as exc:
                optimized_nodes = []
                warnings.append("could not read the optimized model onnxruntime saved: "
                                + describe_exception(exc))
            return node_profile, optimized_nodes, warnings
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)


ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(uint32)": "uint32",
    "tensor(int64)": "int64", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}


def _type_shape(entries):
    """ORT profile ``input_type_shape`` -> (shapes, dtypes)."""
    shapes, dtypes = [], []
    for entry in entries or []:
        if isinstance(entry, dict) and entry:
            dtype, dims = list(entry.items())[0]
            shapes.append(list(dims) if isinstance(dims, list) else dims)
            dtypes.append(dtype)
    return shapes, dtypes


def aggregate_ort_profile(events, skip_runs=1):
    """Aggregate an ONNX Runtime profile per node, in execution order.

    :param events: list of dict, the profile JSON (Chrome trace events)
    :param skip_runs: int, leading ``model_run`` windows to ignore (warm-up)
    :returns: list of OrderedDict -- name, op_type, provider, input_shapes, output_shapes,
        input_dtypes, output_dtypes, median_us, min_us, mean_us, n (min_us since agent 0.2.0: the
        node's fastest timed run, the host's label when it learns fastest-run latency)
    """
    runs = sorted((e.get("ts", 0), e.get("ts", 0) + e.get("dur", 0)) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    skip_before = runs[skip_runs - 1][1] if skip_runs and len(runs) > skip_runs else None
    nodes = collections.OrderedDict()
    kernel_events = [e for e in events if e.get("cat") == "Node"
                     and str(e.get("name", "")).endswith("_kernel_time")]
    kernel_events.sort(key=lambda e: e.get("ts", 0))
    for event in kernel_events:
        if skip_before is not None and event.get("ts", 0) <= skip_before:
            continue
        name = event["name"][:-len("_kernel_time")]
        args = event.get("args") or {}
        record = nodes.get(name)
        if record is None:
            in_shapes, in_dtypes = _type_shape(args.get("input_type_shape"))
            out_shapes, out_dtypes = _type_shape(args.get("output_type_shape"))
            record = {"name": name, "op_type": args.get("op_name"),
                      "provider": args.get("provider"), "input_shapes": in_shapes,
                      "output_shapes": out_shapes, "input_dtypes": in_dtypes,
                      "output_dtypes": out_dtypes, "durations_us": []}
            nodes[name] = record
        record["durations_us"].append(float(event.get("dur", 0)))
    out = []
    for record in nodes.values():
        durations = sorted(record.pop("durations_us"))
        out.append(collections.OrderedDict([
            ("name", record["name"]), ("op_type", record["op_type"]),
            ("provider", record["provider"]), ("input_shapes", record["input_shapes"]),
            ("output_shapes", record["output_shapes"]),
            ("input_dtypes", record["input_dtypes"]), ("output_dtypes", record["output_dtypes"]),
            ("median_us", finite_or_none(percentile(durations, 50), 3)),
            ("min_us", finite_or_none(durations[0], 3)),
            ("mean_us", finite_or_none(sum(durations) / len(durations), 3)),
            ("n", len(durations))]))
    return out


class LiteRtBackend(Backend):
    """LiteRT (TFLite) interpreter, ``num_threads=threads``; XNNPACK on unless ``xnnpack`` is false."""

    runtime = "tflite"

    def load(self):
        interp_mod, module_name, version = import_runtime("tflite")
        opts = self.opts
        kwargs = {"model_path": opts["model_path"], "num_threads": opts["threads"]}
        if not opts["xnnpack"]:
            resolver = getattr(getattr(interp_mod, "OpResolverType", None),
                               "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
            if resolver is None:
                raise bad_request("this %s %s cannot turn XNNPACK off (no OpResolverType); "
                                  "upgrade it or bench with xnnpack: true" % (module_name, version))
            kwargs["experimental_op_resolver_type"] = resolver
        t0 = time.perf_counter()
        try:
            interp = interp_mod.Interpreter(**kwargs)
        except MemoryError:
            raise
        except TypeError as exc:  # an old tflite_runtime without num_threads & co.
            raise AgentFailure("runtime_missing", "%s %s is too old for this agent (%s); "
                               "upgrade it: %s" % (module_name, version,
                                                   describe_exception(exc),
                                                   INSTALL_HINTS["tflite"]))
        except Exception as exc:
            raise AgentFailure("model_rejected", "%s refused the model: %s"
                               % (module_name, describe_exception(exc)))
        details = interp.get_input_details()
        overrides = opts["input_shapes"]
        names = [d["name"] for d in details]
        unknown = [n for n in overrides if n not in names]
        if unknown:
            raise bad_request("input_shapes names %s, but the model's inputs are %s"
                              % (unknown, names))
        for d in details:
            signature = d.get("shape_signature")
            signature = [int(x) for x in (signature if signature is not None and len(signature)
                                          else d["shape"])]
            model_shape = [x if x >= 0 else None for x in signature]
            shape = resolve_shape(d["name"], model_shape, overrides.get(d["name"]), True)
            if shape != [int(x) for x in d["shape"]]:
                try:
                    interp.resize_tensor_input(d["index"], shape)
                except Exception as exc:
                    raise bad_request("cannot resize input %r to %s: %s"
                                      % (d["name"], shape, describe_exception(exc)))
        try:
            interp.allocate_tensors()
        except MemoryError:
            raise
        except Exception as exc:
            message = describe_exception(exc)
            if looks_like_oom(message):
                raise AgentFailure("oom", "%s ran out of memory: %s" % (module_name, message))
            raise AgentFailure("model_rejected", "%s refused the model: %s"
                               % (module_name, message))
        self.init_ms = (time.perf_counter() - t0) * 1e3
        self.interp = interp
        self.inputs = []
        for d in interp.get_input_details():
            shape = [int(x) for x in d["shape"]]
            dtype = self.np.dtype(d["dtype"]).name
            data = make_random_input(self.np, shape, dtype, self.rng, d["name"])
            interp.set_tensor(d["index"], data)  # once: input buffers persist between runs
            self.inputs.append(collections.OrderedDict(
                [("name", d["name"]), ("shape", shape), ("dtype", dtype)]))
        ops = None
        if hasattr(interp, "_get_ops_details"):
            try:
                ops = [op.get("op_name") for op in interp._get_ops_details()]
            except Exception as exc:  # private API: never fail a bench for it
                log("cannot list tflite ops: %s" % describe_exception(exc))
        self.info["runtime_version"] = version
        self.info["runtime_module"] = module_name
        self.info["xnnpack"] = bool(opts["xnnpack"])
        self.info["xnnpack_applied"] = (("DELEGATE" in ops) if ops is not None else None) \
            if opts["xnnpack"] else False
        self.info["tflite_ops"] = ops

    def run(self):
        self.interp.invoke()

    def close(self):
        self.interp = None


class TorchBackend(Backend):
    """PyTorch: ``.pt`` TorchScript (torch.jit.load) or ``.pt2`` (torch.export.load)."""

    runtime = "torch"

    def load(self):
        torch, module_name, version = import_runtime("torch")
        opts = self.opts
        if not opts["input_shapes"]:
            raise bad_request("torch models need input_shapes ({name: [dims]}, in the order "
                              "of the model's forward arguments)")
        torch.set_num_threads(opts["threads"])
        path = opts["model_path"]
        half = opts["precision"] == "fp16"
        t0 = time.perf_counter()
        try:
            if path.endswith(".pt2"):
                module = torch.export.load(path).module()
            else:
                module = torch.jit.load(path, map_location="cpu")
                module.eval()
            if half:
                module = module.half()
        except MemoryError:
            raise
        except Exception as exc:
            raise AgentFailure("model_rejected", "torch refused the model: "
                               + describe_exception(exc))
        self.init_ms = (time.perf_counter() - t0) * 1e3
        self.module = module
        self.tensors = []
        self.inputs = []
        for name, shape in opts["input_shapes"].items():
            dtype = opts["input_dtypes"].get(name, "float32")
            if half and self.np.dtype(dtype).kind == "f":
                dtype = "float16"
            data = make_random_input(self.np, shape, dtype, self.rng, name)
            self.tensors.append(torch.from_numpy(data))
            self.inputs.append(collections.OrderedDict(
                [("name", name), ("shape", list(shape)), ("dtype", dtype)]))
        self.info["runtime_version"] = version
        self.info["runtime_module"] = module_name
        self.info["torch_format"] = "export" if path.endswith(".pt2") else "torchscript"

    @contextmanager
    def running(self):
        torch = import_runtime("torch")[0]
        mode = getattr(torch, "inference_mode", None) or torch.no_grad
        with mode():
            yield

    def run(self):
        self.module(*self.tensors)

    def close(self):
        self.module = None


BACKENDS = {"onnxruntime": OrtBackend, "tflite": LiteRtBackend, "torch": TorchBackend}


# =====================================================================================
# Bench
# =====================================================================================

#: bench argument -> default (``None`` for model_path means required).
BENCH_DEFAULTS = collections.OrderedDict([
    ("model_path", None), ("runtime", None), ("threads", 1), ("precision", "fp32"),
    ("input_shapes", {}), ("input_dtypes", {}), ("warmup_runs", 3), ("warmup_min_secs", 0.1),
    ("num_runs", 50), ("min_secs", 1.0), ("max_secs", 150.0), ("profile_runs", 0),
    ("ort_optimization_level", "all"), ("providers", None), ("xnnpack", True),
    ("return_samples", False), ("isolate", True), ("timeout_secs", None), ("seed", 0),
    ("test_hook", None), ("heartbeat_secs", 0.0),
])

TEST_HOOKS = ("segv", "abort", "sigkill", "memory_error", "raise", "stdout_noise")


def _int_arg(raw, name, minimum):
    value = raw.get(name, BENCH_DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request("%s must be a whole number >= %d, got %r" % (name, minimum, value))
    return value


def _num_arg(raw, name, minimum=0.0):
    value = raw.get(name, BENCH_DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= minimum) or math.isinf(value):
        raise bad_request("%s must be a number >= %s, got %r" % (name, minimum, value))
    return float(value)


def _bool_arg(raw, name):
    value = raw.get(name, BENCH_DEFAULTS[name])
    if not isinstance(value, bool):
        raise bad_request("%s must be true or false, got %r" % (name, value))
    return value


def _choice_arg(raw, name, choices):
    value = raw.get(name, BENCH_DEFAULTS[name])
    if value not in choices:
        raise bad_request("%s must be one of %s, got %r" % (name, ", ".join(choices), value))
    return value


def parse_bench_args(raw, workdir=None):
    """Validate and complete the ``args`` of a bench request.

    :param raw: dict from the request
    :param workdir: str or None, relative model paths are resolved against it
    :returns: (dict of options, list of str warnings about ignored fields)
    :raises AgentFailure: bad_request
    """
    if not isinstance(raw, dict):
        raise bad_request("bench args must be a JSON object, got %s" % type(raw).__name__)
    notes = []
    unknown = [k for k in raw if k not in BENCH_DEFAULTS]
    if unknown:
        notes.append("ignored unknown bench args: %s (agent %s)" % (", ".join(sorted(unknown)),
                                                                    AGENT_VERSION))
    opts = collections.OrderedDict()
    model_path = raw.get("model_path")
    if not isinstance(model_path, str) or not model_path:
        raise bad_request("bench needs model_path (a path on the device)")
    model_path = os.path.expanduser(model_path)
    if workdir and not os.path.isabs(model_path):
        model_path = os.path.join(workdir, model_path)
    opts["model_path"] = model_path
    runtime = raw.get("runtime")
    if runtime is None:
        suffix = os.path.splitext(model_path)[1].lower()
        runtime = SUFFIX_RUNTIME.get(suffix)
        if runtime is None:
            raise bad_request("cannot tell the runtime from the suffix %r of %s; pass runtime "
                              "(one of %s)" % (suffix, model_path, ", ".join(RUNTIMES)))
    runtime = RUNTIME_ALIASES.get(runtime, runtime)
    if runtime not in RUNTIMES:
        raise bad_request("unknown runtime %r; use one of: %s" % (runtime, ", ".join(RUNTIMES)))
    opts["runtime"] = runtime
    opts["threads"] = _int_arg(raw, "threads", 1)
    opts["precision"] = _choice_arg(raw, "precision", PRECISIONS)
    for name in ("input_shapes", "input_dtypes"):
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise bad_request("%s must be an object {input name: ...}, got %r" % (name, value))
        opts[name] = collections.OrderedDict(value)
    for name, dims in opts["input_shapes"].items():
        if not isinstance(dims, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
            raise bad_request("input_shapes[%r] must be a list of whole numbers >= 0, got %r"
                              % (name, dims))
    for name, dtype in opts["input_dtypes"].items():
        if dtype not in ("float32", "float16", "float64", "int8", "uint8", "int16", "int32",
                         "int64", "bool"):
            raise bad_request("input_dtypes[%r] = %r is not a supported dtype" % (name, dtype))
    opts["warmup_runs"] = _int_arg(raw, "warmup_runs", 0)
    opts["warmup_min_secs"] = _num_arg(raw, "warmup_min_secs")
    opts["num_runs"] = _int_arg(raw, "num_runs", 1)
    opts["min_secs"] = _num_arg(raw, "min_secs")
    opts["max_secs"] = _num_arg(raw, "max_secs")
    opts["profile_runs"] = _int_arg(raw, "profile_runs", 0)
    opts["ort_optimization_level"] = _choice_arg(raw, "ort_optimization_level",
                                                 tuple(ORT_LEVELS))
    providers = raw.get("providers")
    if providers is not None and (not isinstance(providers, list) or not providers or not all(
            isinstance(p, str) for p in providers)):
        raise bad_request("providers must be a non-empty list of onnxruntime execution "
                          "provider names, got %r" % (providers,))
    opts["providers"] = providers
    opts["xnnpack"] = _bool_arg(raw, "xnnpack")
    opts["return_samples"] = _bool_arg(raw, "return_samples")
    opts["isolate"] = _bool_arg(raw, "isolate")
    timeout = raw.get("timeout_secs")
    if timeout is None:
        opts["timeout_secs"] = opts["max_secs"] + 120.0
    else:
        opts["timeout_secs"] = _num_arg(raw, "timeout_secs", 0.0)
    opts["seed"] = _int_arg(raw, "seed", 0)
    opts["heartbeat_secs"] = _num_arg(raw, "heartbeat_secs")
    hook = raw.get("test_hook")
    if hook is not None:
        if os.environ.get(TEST_HOOKS_ENV) != "1":
            raise bad_request("test_hook is only accepted when %s=1 is set in the agent's "
                              "environment (tests only)" % TEST_HOOKS_ENV)
        if hook not in TEST_HOOKS:
            raise bad_request("test_hook must be one of %s" % ", ".join(TEST_HOOKS))
    opts["test_hook"] = hook
    return opts, notes


def fire_test_hook(hook):
    """Simulate a failure inside the worker (tests only; see ``TEST_HOOKS_ENV``).

    ``segv``/``abort`` kill the process with that signal (no core dump), ``sigkill``
    imitates the OOM killer, ``memory_error`` raises MemoryError, ``raise`` an
    unexpected exception (an agent bug), ``stdout_noise`` writes to fd 1 and
    ``sys.stdout`` as chatty runtimes do, then benches normally.
    """
    if hook is None:
        return
    if hook in ("segv", "abort", "sigkill"):
        try:
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
        sig = {"segv": signal.SIGSEGV, "abort": signal.SIGABRT, "sigkill": signal.SIGKILL}[hook]
        if sig != signal.SIGKILL:  # SIGKILL's disposition cannot be changed
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(10)
    if hook == "memory_error":
        raise MemoryError("test hook")
    if hook == "raise":
        raise RuntimeError("test hook: unexpected exception")
    if hook == "stdout_noise":
        os.write(1, b"INFO: noise written to fd 1 by a runtime\n")
        print("noise printed by Python code in the worker")


def timed_loop(run, min_runs, min_secs, max_secs, at_least_one=True):
    """Run ``run`` until ``min_runs`` and ``min_secs`` are both met, stopping at ``max_secs``.

    Each run is timed with ``time.perf_counter()`` around the call only.

    :returns: (list of float ms per run, float wall seconds of the loop)
    """
    clock = time.perf_counter
    samples = []
    if not at_least_one and min_runs <= 0 and min_secs <= 0:
        return samples, 0.0
    start = clock()
    while True:
        t0 = clock()
        run()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        elapsed = t1 - start
        if elapsed >= max_secs:
            break
        if len(samples) >= min_runs and elapsed >= min_secs:
            break
    return samples, clock() - start


def bench(opts):
    """One measurement, as TFLite's benchmark_model makes it.

    Init (session creation), one first inference, warm-up runs (until ``warmup_runs`` and
    ``warmup_min_secs``), timed runs (until ``num_runs`` and ``min_secs``, stopping at
    ``max_secs``, at least one), then optionally an ORT profiling session.

    :param opts: dict from ``parse_bench_args``
    :returns: OrderedDict -- the bench result (see PROTOCOL.md)
    :raises AgentFailure:
    """
    t_start = time.perf_counter()
    backend = BACKENDS[opts["runtime"]](opts)
    backend.load()
    fire_test_hook(opts["test_hook"])
    root = sysroot()
    gc_was_enabled = gc.isenabled()
    try:
        with backend.running():
            t0 = time.perf_counter()
            backend.run()
            first_ms = (time.perf_counter() - t0) * 1e3
            gc.disable()  # a collection inside a timed run is noise no runtime user sees
            warmup, _ = timed_loop(backend.run, opts["warmup_runs"], opts["warmup_min_secs"],
                                   opts["max_secs"], at_least_one=False)
            env_start = read_environment(root)
            samples, timed_secs = timed_loop(backend.run, opts["num_runs"], opts["min_secs"],
                                             opts["max_secs"])
            env_end = read_environment(root)
    except (AgentFailure, MemoryError):
        raise
    except Exception as exc:
        message = describe_exception(exc)
        if looks_like_oom(message):
            raise AgentFailure("oom", "%s ran out of memory during inference: %s"
                               % (opts["runtime"], message))
        raise AgentFailure("run_failed", "%s failed during inference: %s"
                           % (opts["runtime"], message))
    finally:
        if gc_was_enabled:
            gc.enable()
    total_secs = time.perf_counter() - t_start
    stats = latency_stats(samples)
    environment = collections.OrderedDict([
        ("governor", env_start["governor"]),
        ("cpu_freq_mhz_start", env_start["cpu_freq_mhz"]),
        ("cpu_freq_mhz_end", env_end["cpu_freq_mhz"]),
        ("max_temp_c_start", env_start["max_temp_c"]),
        ("max_temp_c_end", env_end["max_temp_c"]),
        ("timer_resolution_ns", time.get_clock_info("perf_counter").resolution * 1e9),
    ])
    warnings = spread_warnings(stats) + environment_warnings(environment)
    result = collections.OrderedDict()
    result["schema_version"] = SCHEMA_VERSION
    result["agent_version"] = AGENT_VERSION
    result["model_path"] = opts["model_path"]
    result["model_bytes"] = os.path.getsize(opts["model_path"])
    result["runtime"] = opts["runtime"]
    result["runtime_version"] = backend.info.pop("runtime_version", None)
    result["runtime_module"] = backend.info.pop("runtime_module", None)
    result["threads"] = opts["threads"]
    result["precision"] = opts["precision"]
    result["provider"] = None
    result["ort_optimization_level"] = None
    result["xnnpack"] = None
    result.update(backend.info)
    result["isolated"] = False  # set by the caller when it ran in a worker
    result["seed"] = opts["seed"]
    result["inputs"] = backend.inputs
    result["init_ms"] = finite_or_none(backend.init_ms)
    result["first_inference_ms"] = finite_or_none(first_ms)
    result["warmup"] = collections.OrderedDict([
        ("n", len(warmup)),
        ("mean_ms", finite_or_none(sum(warmup) / len(warmup)) if warmup else None)])
    result["stats"] = stats
    result["timed_secs"] = finite_or_none(timed_secs)
    result["total_secs"] = finite_or_none(total_secs)
    result["warnings"] = warnings
    result["environment"] = environment
    result["node_profile"] = None
    result["optimized_nodes"] = None
    backend.close()  # before profiling: never hold two sessions of a big model at once
    if opts["profile_runs"] > 0:
        if opts["runtime"] == "onnxruntime":
            t_prof = time.perf_counter()
            try:
                nodes, optimized, prof_warnings = backend.profile(opts["profile_runs"])
            except AgentFailure as exc:  # keep the timed measurement; say what failed
                nodes, optimized = [], []
                prof_warnings = ["the profiling session failed (%s): %s"
                                 % (exc.kind, exc.message)]
            except Exception as exc:  # an older runtime's API: same, keep the measurement
                nodes, optimized = [], []
                prof_warnings = ["the profiling session failed: %s" % describe_exception(exc)]
            result["node_profile"] = nodes
            result["optimized_nodes"] = optimized
            result["profile_secs"] = finite_or_none(time.perf_counter() - t_prof)
            warnings.extend(prof_warnings)
        else:
            warnings.append("profile_runs is only supported for onnxruntime; ignored")
    result["samples_ms"] = [finite_or_none(s) for s in samples] if opts["return_samples"] \
        else None
    return result


# =====================================================================================
# Worker isolation
# =====================================================================================

#: The file object carrying the protocol (a private copy of the original stdout), if any.
_PROTOCOL_STREAM = None


def signal_name(signum):
    """:returns: str -- e.g. ``SIGSEGV``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "signal %d" % signum


def can_fork():
    """:returns: bool -- whether workers can be forked here (POSIX)."""
    return hasattr(os, "fork")


def _flush_std():
    for stream in (sys.stdout, sys.stderr, _PROTOCOL_STREAM):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _child_setup():
    """In a freshly forked worker: no stdin, no access to the protocol stream."""
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    except OSError:
        pass
    if _PROTOCOL_STREAM is not None:
        try:
            os.close(_PROTOCOL_STREAM.fileno())
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()


def _die_with_parent():
    """Linux: the worker gets SIGKILL when the agent dies (e.g. the SSH link dropped)."""
    if _PRCTL:
        try:
            _PRCTL[0](1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, TypeError):
            pass


#: libc's prctl, resolved once in the agent process (ctypes is not imported per worker).
_PRCTL = []


def freeze_heap():
    """After importing a runtime: collect once, then ``gc.freeze()`` (Python >= 3.7).

    Frozen objects are out of the collector's reach, so a collection in a worker does
    not walk (and copy-on-write fault in) the agent's whole heap -- which costs tens of
    ms per worker once torch is imported.
    """
    freeze = getattr(gc, "freeze", None)  # Python >= 3.7; 3.6 just goes without
    if freeze is not None:
        gc.collect()
        freeze()


def _prepare_fork():
    """Before each fork: resolve prctl once, reap workers that finished."""
    if not _PRCTL and sys.platform.startswith("linux"):
        try:
            import ctypes
            _PRCTL.append(ctypes.CDLL(None, use_errno=True).prctl)
        except (ImportError, OSError, AttributeError):
            _PRCTL.append(None)
    for pid in list(_UNREAPED):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _UNREAPED.remove(pid)


#: Workers that delivered a whole result and were still tearing down (reaped later).
_UNREAPED = []


class Heartbeat(object):
    """Progress lines for the host while a request waits on a worker.

    ``serve`` installs one (``_HEARTBEAT[0]``) for a bench request with ``heartbeat_secs``
    > 0; ``run_in_worker`` wakes up at least every ``interval_secs`` and writes
    ``{"id": ID, "heartbeat": true, "elapsed_s": ...}`` to the protocol stream, so a host
    on a flaky link can tell a long bench from a dead link.  Heartbeats come only while a
    forked worker runs (the runtime import probe and the bench itself), never from the
    agent's own in-process work; a host must not treat a short silence as a failure.

    :param stream: the protocol stream
    :param request_id: the request's ``id``, echoed
    :param interval_secs: float > 0
    """

    def __init__(self, stream, request_id, interval_secs):
        self.stream = stream
        self.request_id = request_id
        self.interval_secs = interval_secs
        self.start = time.monotonic()
        self.next_at = self.start + interval_secs
        self.failed = False

    def wait_secs(self):
        """:returns: float -- seconds until the next heartbeat is due (>= 0)."""
        return max(0.0, self.next_at - time.monotonic())

    def maybe_beat(self):
        """Write a heartbeat line if one is due (a closed stream is ignored)."""
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.interval_secs
        if self.failed:
            return
        try:
            emit(self.stream, collections.OrderedDict([
                ("id", self.request_id), ("heartbeat", True),
                ("elapsed_s", round(now - self.start, 3))]))
        except (OSError, ValueError):  # the host went away; the final response will say so
            self.failed = True


#: The heartbeat of the request being served, or None (a list so workers share the slot).
_HEARTBEAT = [None]


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _call_for_payload(func, arg):
    """Call ``func(arg)`` and turn the outcome into a response payload (never raises)."""
    try:
        return {"ok": True, "result": func(arg)}
    except AgentFailure as exc:
        return {"ok": False, "error": exc.to_dict()}
    except MemoryError as exc:
        return {"ok": False, "error": {"kind": "oom", "message": "the worker ran out of "
                                       "memory (MemoryError %s); the model needs more memory "
                                       "than the device has free" % exc}}
    except Exception:
        return {"ok": False, "error": {"kind": "internal_error", "message":
                                       "agent bug: " + traceback.format_exc()[-3000:]}}


def run_in_worker(func, arg, timeout_secs, activity="benchmarking"):
    """Run ``func(arg)`` in a forked worker and return its payload.

    The worker sends one JSON document back over a pipe and ends with ``os._exit``.
    A worker killed by a signal gives ``crash`` (``oom`` for SIGKILL, which is what the
    kernel's OOM killer sends); one that runs past ``timeout_secs`` is killed (``timeout``).

    :param func: callable taking ``arg`` and returning a JSON-serializable value
    :param arg: its argument
    :param timeout_secs: float
    :param activity: str, what the worker does (for error messages)
    :returns: dict -- ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``
    """
    _prepare_fork()
    read_fd, write_fd = os.pipe()
    _flush_std()
    pid = os.fork()
    if pid == 0:  # the worker
        status = 0
        try:
            os.close(read_fd)
            _child_setup()
            payload = _call_for_payload(func, arg)
            try:
                data = json.dumps(payload).encode("utf-8")
            except (TypeError, ValueError) as exc:
                data = json.dumps({"ok": False, "error": {
                    "kind": "internal_error",
                    "message": "agent bug: result not serializable: %s" % exc}}).encode("utf-8")
            _write_all(write_fd, data)
            os.close(write_fd)  # EOF now: the agent need not wait for our teardown
        except BaseException:  # noqa: B036 -- whatever happens, the worker must _exit
            status = 70
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks = []
    timed_out = False
    deadline = time.monotonic() + timeout_secs
    heartbeat = _HEARTBEAT[0]
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            wait = remaining if heartbeat is None else min(remaining, heartbeat.wait_secs())
            ready, _, _ = select.select([read_fd], [], [], wait)
            if heartbeat is not None:
                heartbeat.maybe_beat()
            if not ready:
                continue
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:  # e.g. KeyboardInterrupt: never leave a worker behind
        _kill(pid)
        _reap(pid, deadline=time.monotonic() + 5.0)
        raise
    finally:
        os.close(read_fd)
    if timed_out:
        _kill(pid)
        _reap(pid, deadline=time.monotonic() + 10.0)
        raise AgentFailure("timeout", "the worker ran longer than timeout_secs=%g and was "
                           "killed; raise timeout_secs, or lower max_secs/num_runs"
                           % timeout_secs)
    data = b"".join(chunks)
    try:
        payload = json.loads(data.decode("utf-8")) if data else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):  # a whole result: do not wait for the worker's exit
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if not done:
            _UNREAPED.append(pid)
        return payload
    status = _reap(pid, deadline=time.monotonic() + 10.0)
    if status is not None and os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGKILL:
            raise AgentFailure("oom", "the worker was killed by SIGKILL while %s, as the "
                               "kernel's OOM killer does: the model likely needs more memory "
                               "than the device has free (see dmesg)" % activity)
        raise AgentFailure("crash", "the worker died from %s (%s) while %s"
                           % (signal_name(signum), signum, activity))
    code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
    raise AgentFailure("crash", "the worker exited (status %s) without a result" % code)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(pid, deadline):
    """Wait for ``pid``; kill it if it is still alive at ``deadline``.  :returns: status."""
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() > deadline:
            _kill(pid)
            deadline = time.monotonic() + 3600.0
        time.sleep(0.0005)


def _probe_import(runtime):
    import_runtime(runtime)
    return True


#: model suffix -> modules a runtime imports lazily on first load (slow on small boards);
#: the agent imports them once, before forking, so that no worker pays for them again.
WARM_IMPORTS = {".pt2": ("torch._export.serde.serialize",)}


def warm_imports(model_path):
    """Import what loading this kind of model would import lazily (best effort)."""
    for name in WARM_IMPORTS.get(os.path.splitext(model_path)[1].lower(), ()):
        if name in sys.modules:
            continue
        try:
            __import__(name)
        except Exception as exc:  # a private module moved: the worker imports it itself
            log("could not pre-import %s: %s" % (name, describe_exception(exc)))
        freeze_heap()


def preload_runtime(runtime, isolate=True):
    """Import ``runtime`` in this (the serving) process, so forked workers inherit it.

    The first time, the import is tried in a forked child: a runtime whose import crashes
    (a wheel built for another CPU, emulation) then cannot kill the agent.

    :raises AgentFailure: runtime_missing
    """
    if runtime in _RUNTIME_CACHE:
        return
    if isolate and can_fork():
        try:
            payload = run_in_worker(_probe_import, runtime, RUNTIME_PROBE_TIMEOUT_SECS,
                                    activity="importing %s" % runtime)
        except AgentFailure as exc:
            raise AgentFailure("runtime_missing", "importing %s failed in a test process (%s); "
                               "the installed package is broken on this device, reinstall it: %s"
                               % (runtime, exc.message, INSTALL_HINTS[runtime]))
        if not payload.get("ok"):
            error = payload.get("error") or {}
            raise AgentFailure(error.get("kind", "runtime_missing"), error.get("message", ""))
    import_runtime(runtime)
    if isolate:
        freeze_heap()


def handle_bench(raw_args, workdir=None):
    """Validate, then bench in a forked worker (or in-process with ``isolate: false``).

    :returns: dict -- the bench result
    :raises AgentFailure:
    """
    opts, notes = parse_bench_args(raw_args, workdir)
    if not os.path.isfile(opts["model_path"]):
        raise AgentFailure("model_not_found", "no model file at %s on this device; upload it "
                           "first" % opts["model_path"])
    isolate = opts["isolate"] and can_fork()
    preload_runtime(opts["runtime"], isolate)
    if isolate:
        warm_imports(opts["model_path"])
    if isolate:
        payload = run_in_worker(bench, opts, opts["timeout_secs"],
                                activity="benchmarking %s with %s (the runtime crashed on "
                                "this model)" % (os.path.basename(opts["model_path"]),
                                                 opts["runtime"]))
        if not payload.get("ok"):
            error = payload.get("error") or {}
            raise AgentFailure(error.get("kind", "internal_error"), error.get("message", ""))
        result = payload["result"]
        result["isolated"] = True
    else:
        try:
            result = bench(opts)
        except MemoryError as exc:
            raise AgentFailure("oom", "ran out of memory (MemoryError %s)" % exc)
        if opts["isolate"]:
            notes.append("this platform cannot fork: the bench ran in the agent process")
    result["warnings"] = notes + result["warnings"]
    return result


# =====================================================================================
# Serve
# =====================================================================================


def protect_stdout():
    """Keep the protocol on a private copy of stdout; send fd 1 to stderr.

    Runtimes print from C code (``INFO: Created TensorFlow Lite XNNPACK delegate``); with
    fd 1 pointing at stderr none of that can corrupt the JSON stream.

    :returns: file object for protocol output
    """
    global _PROTOCOL_STREAM
    if _PROTOCOL_STREAM is not None:
        return _PROTOCOL_STREAM
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    _PROTOCOL_STREAM = os.fdopen(proto_fd, "w", encoding="utf-8")
    sys.stdout = sys.stderr
    return _PROTOCOL_STREAM


def encode_line(obj):
    """One JSON line; a response that cannot be encoded becomes an internal_error."""
    try:
        return json.dumps(obj, separators=(",", ":")) + "\n"
    except (TypeError, ValueError) as exc:
        request_id = obj.get("id") if isinstance(obj, dict) else None
        try:
            json.dumps(request_id)
        except (TypeError, ValueError):
            request_id = None
        return json.dumps({"id": request_id, "ok": False, "error": {
            "kind": "internal_error",
            "message": "agent bug: response not serializable: %s" % exc}}) + "\n"


def emit(stream, obj):
    """Write one JSON line and flush it.  :raises OSError, ValueError: stream closed."""
    stream.write(encode_line(obj))
    stream.flush()


class Server(object):
    """The ``serve`` loop: one response line per request line, in order.

    :param workdir: str, relative model paths resolve here; ``shutdown`` with ``cleanup``
        removes ``workdir/models``
    """

    def __init__(self, workdir):
        self.workdir = os.path.abspath(workdir)
        self.runtimes = None  # cached probe_runtimes() result
        self.stream_out = None  # set by serve(); heartbeats go there

    def hello(self):
        """:returns: dict -- the first line the agent writes."""
        return collections.OrderedDict([
            ("hello", "edgecost-agent"), ("protocol_version", PROTOCOL_VERSION),
            ("agent_version", AGENT_VERSION), ("python", platform.python_version()),
            ("pid", os.getpid()), ("workdir", self.workdir), ("isolation", can_fork()),
            ("heartbeat", True)])

    def handle_line(self, line):
        """:returns: (dict response, bool stop)."""
        try:
            request = json.loads(line, object_pairs_hook=collections.OrderedDict)
        except ValueError as exc:
            return self._error(None, bad_request("malformed request line (%s): %r"
                                                 % (exc, line[:200]))), False
        if not isinstance(request, dict):
            return self._error(None, bad_request("a request must be a JSON object")), False
        request_id = request.get("id")
        cmd = request.get("cmd")
        args = request.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return self._error(request_id, bad_request("args must be a JSON object")), False
        try:
            if cmd == "ping":
                result = {"pong": True}
            elif cmd == "sysinfo":
                probe = args.get("probe_runtimes", True)
                if probe and self.runtimes is None:
                    self.runtimes = probe_runtimes()
                result = sysinfo(probe=bool(probe), runtimes=self.runtimes if probe else None)
            elif cmd == "bench":
                result = self._bench(request_id, args)
            elif cmd == "shutdown":
                cleaned = False
                if args.get("cleanup"):
                    models = os.path.join(self.workdir, "models")
                    if os.path.isdir(models):
                        shutil.rmtree(models, ignore_errors=True)
                        cleaned = True
                return self._ok(request_id, {"shutdown": True, "cleaned": cleaned}), True
            else:
                raise bad_request("unknown cmd %r; known: ping, sysinfo, bench, shutdown"
                                  % (cmd,))
        except AgentFailure as exc:
            return self._error(request_id, exc), False
        except MemoryError as exc:
            return self._error(request_id, AgentFailure("oom", "the agent ran out of memory "
                                                        "(%s)" % exc)), False
        except Exception:
            return self._error(request_id, AgentFailure(
                "internal_error", "agent bug: " + traceback.format_exc()[-3000:])), False
        return self._ok(request_id, result), False

    def _bench(self, request_id, args):
        """``handle_bench`` with heartbeats when the request asks for them."""
        interval = args.get("heartbeat_secs")
        if (self.stream_out is None or isinstance(interval, bool)
                or not isinstance(interval, (int, float)) or not interval > 0
                or math.isinf(interval)):
            return handle_bench(args, self.workdir)  # bad values: parse_bench_args says so
        _HEARTBEAT[0] = Heartbeat(self.stream_out, request_id, float(interval))
        try:
            return handle_bench(args, self.workdir)
        finally:
            _HEARTBEAT[0] = None

    @staticmethod
    def _ok(request_id, result):
        return collections.OrderedDict([("id", request_id), ("ok", True), ("result", result)])

    @staticmethod
    def _error(request_id, failure):
        return collections.OrderedDict([("id", request_id), ("ok", False),
                                        ("error", failure.to_dict())])

    def serve(self, stream_in, stream_out):
        """Serve until end of input or ``shutdown``.  :returns: int exit code."""
        self.stream_out = stream_out
        try:
            emit(stream_out, self.hello())
        except (OSError, ValueError):
            return 1
        log("serving on stdin/stdout (pid %d, workdir %s)" % (os.getpid(), self.workdir))
        while True:
            try:
                line = stream_in.readline()
            except KeyboardInterrupt:
                break
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                response, stop = self.handle_line(line)
            except KeyboardInterrupt:
                break
            try:
                emit(stream_out, response)
            except (OSError, ValueError):  # the host went away
                return 1
            if stop:
                break
        log("done")
        return 0


# =====================================================================================
# CLI
# =====================================================================================

EPILOG = """\
environment:
  EDGECOST_AGENT_SYSROOT   prefix for /proc, /sys, /etc reads (tests; default /)
  EDGECOST_AGENT_TEST_HOOKS=1  allow the bench arg test_hook (tests only)

exit codes: 0 ok, 1 failure (the JSON says why), 2 bad arguments

examples:
  python3 edgecost_agent.py sysinfo
  python3 edgecost_agent.py bench mobilenet_v2.onnx --threads 2 --profile-runs 10
  python3 edgecost_agent.py bench model.tflite --no-xnnpack --num-runs 100
  python3 edgecost_agent.py bench net.pt --input-shape x=1x3x224x224
  python3 edgecost_agent.py serve --workdir ~/edgecost
"""


def _shape_pair(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError("expected NAME=1x3x224x224, got %r" % text)
    name, dims = text.rsplit("=", 1)
    try:
        shape = [int(d) for d in re.split(r"[x,]", dims) if d != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("expected NAME=1x3x224x224, got %r" % text)
    return name, shape


def _dtype_pair(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError("expected NAME=DTYPE, got %r" % text)
    return tuple(text.rsplit("=", 1))


def build_parser():
    """:returns: argparse.ArgumentParser."""
    parser = argparse.ArgumentParser(
        prog="edgecost_agent.py",
        description="edgecost device agent %s: measures neural-network inference latency "
                    "on this device (ONNX Runtime, LiteRT/TFLite, PyTorch) and reports what "
                    "the device is. Output is JSON on stdout; logs go to stderr."
                    % AGENT_VERSION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version="edgecost-agent %s (protocol %d)"
                        % (AGENT_VERSION, PROTOCOL_VERSION))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_sys = sub.add_parser("sysinfo", help="describe this device (one JSON document)",
                           description="Describe this device: OS, CPU, memory, board, "
                           "thermal zones, GPUs, power sensors, runtimes.")
    p_sys.add_argument("--no-runtimes", action="store_true",
                       help="skip probing the runtimes (each is imported in a subprocess)")
    p_sys.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")

    p_bench = sub.add_parser(
        "bench", help="measure one model (one JSON document)",
        description="Measure one model as TFLite's benchmark_model does: warm-up, then timed "
                    "runs until --num-runs and --min-secs are both met, stopping at "
                    "--max-secs.")
    p_bench.add_argument("model", help="model file: .onnx, .tflite, .pt (TorchScript), .pt2")
    p_bench.add_argument("--runtime", choices=RUNTIMES, help="default: from the file suffix")
    p_bench.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p_bench.add_argument("--precision", choices=PRECISIONS, default="fp32",
                         help="recorded; for torch fp16 casts module and inputs to half")
    p_bench.add_argument("--input-shape", action="append", type=_shape_pair, default=[],
                         metavar="NAME=DIMS",
                         help="fix an input's shape, e.g. x=1x3x224x224 (repeatable; in "
                              "argument order for torch)")
    p_bench.add_argument("--input-dtype", action="append", type=_dtype_pair, default=[],
                         metavar="NAME=DTYPE", help="torch input dtype (default float32)")
    p_bench.add_argument("--warmup-runs", type=int, default=3)
    p_bench.add_argument("--warmup-min-secs", type=float, default=0.1)
    p_bench.add_argument("--num-runs", type=int, default=50)
    p_bench.add_argument("--min-secs", type=float, default=1.0)
    p_bench.add_argument("--max-secs", type=float, default=150.0)
    p_bench.add_argument("--profile-runs", type=int, default=0,
                         help="onnxruntime: per-node profile over this many extra runs")
    p_bench.add_argument("--ort-level", choices=list(ORT_LEVELS), default="all",
                         help="onnxruntime graph optimization level (default all)")
    p_bench.add_argument("--provider", action="append", default=[],
                         help="onnxruntime execution provider (repeatable; default CPU)")
    p_bench.add_argument("--no-xnnpack", action="store_true",
                         help="LiteRT: builtin kernels only (XNNPACK is on by default)")
    p_bench.add_argument("--return-samples", action="store_true",
                         help="include every timed sample in samples_ms")
    p_bench.add_argument("--no-isolate", action="store_true",
                         help="run in this process instead of a forked worker")
    p_bench.add_argument("--timeout-secs", type=float, default=None,
                         help="kill the worker after this long (default max-secs + 120)")
    p_bench.add_argument("--seed", type=int, default=0, help="random input seed")
    p_bench.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")

    p_serve = sub.add_parser(
        "serve", help="serve JSON-lines requests on stdin/stdout",
        description="Serve JSON-lines requests (ping, sysinfo, bench, shutdown) on stdin, one "
                    "response line each on stdout, until end of input or shutdown.")
    p_serve.add_argument("--workdir", default=None,
                         help="relative model paths resolve here; shutdown with cleanup removes "
                              "WORKDIR/models (default: the directory of this file)")
    return parser


def bench_args_from_cli(ns):
    """:returns: dict -- bench request args from parsed CLI options."""
    args = collections.OrderedDict([
        ("model_path", ns.model), ("threads", ns.threads), ("precision", ns.precision),
        ("input_shapes", collections.OrderedDict(ns.input_shape)),
        ("input_dtypes", collections.OrderedDict(ns.input_dtype)),
        ("warmup_runs", ns.warmup_runs), ("warmup_min_secs", ns.warmup_min_secs),
        ("num_runs", ns.num_runs), ("min_secs", ns.min_secs), ("max_secs", ns.max_secs),
        ("profile_runs", ns.profile_runs), ("ort_optimization_level", ns.ort_level),
        ("xnnpack", not ns.no_xnnpack), ("return_samples", ns.return_samples),
        ("isolate", not ns.no_isolate), ("seed", ns.seed)])
    if ns.runtime:
        args["runtime"] = ns.runtime
    if ns.provider:
        args["providers"] = ns.provider
    if ns.timeout_secs is not None:
        args["timeout_secs"] = ns.timeout_secs
    return args


def main(argv=None):
    """Entry point.  :returns: int exit code (0 ok, 1 failure, 2 bad arguments)."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help(sys.stderr)
        return 2
    out = protect_stdout()
    if ns.command == "serve":
        workdir = ns.workdir or os.path.dirname(os.path.abspath(__file__))
        return Server(os.path.expanduser(workdir)).serve(sys.stdin, out)
    if ns.command == "sysinfo":
        try:
            payload = {"ok": True, "result": sysinfo(probe=not ns.no_runtimes)}
        except Exception:
            payload = {"ok": False, "error": {"kind": "internal_error", "message":
                                              "agent bug: " + traceback.format_exc()[-3000:]}}
        out.write(json.dumps(payload, indent=ns.indent) + "\n")
        out.flush()
        return 0 if payload["ok"] else 1
    # bench
    try:
        payload = {"ok": True, "result": handle_bench(bench_args_from_cli(ns), os.getcwd())}
    except AgentFailure as exc:
        payload = {"ok": False, "error": exc.to_dict()}
    except Exception:
        payload = {"ok": False, "error": {"kind": "internal_error", "message":
                                          "agent bug: " + traceback.format_exc()[-3000:]}}
    out.write(json.dumps(payload, indent=ns.indent) + "\n")
    out.flush()
    if payload["ok"]:
        return 0
    return 2 if payload["error"]["kind"] == "bad_request" else 1


if __name__ == "__main__":
    sys.exit(main())
