"""Tests of device_agents/edgecost_agent.py against the real runtimes (no mocks).

Models are tiny and built here (onnx.helper, torch.jit, litert_torch); sysfs is faked
by trees laid out as on real boards under EDGECOST_AGENT_SYSROOT.  No test asserts an
absolute time: only counts, orderings and generous bounds.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "device_agents" / "edgecost_agent.py"

#: bench args that make a run as short as the semantics allow
QUICK_ARGS = {"warmup_runs": 1, "warmup_min_secs": 0.0, "num_runs": 5, "min_secs": 0.0}

pytestmark = [
    pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"),  # JAX (litert_torch) noise
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

PY36_CANDIDATES = [os.environ.get("EDGECOST_TEST_PYTHON36", ""),
                   os.path.expanduser("~/.pyenv/versions/3.6.15/bin/python3.6"),
                   shutil.which("python3.6") or ""]


def run_cli(*args, env=None, timeout=120):
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(AGENT), *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout)
    return proc


def cli_json(proc):
    return json.loads(proc.stdout)


# =====================================================================================
# The file itself: Python 3.6, one file, no forbidden constructs
# =====================================================================================


def test_agent_parses_as_python36():
    source = AGENT.read_text()
    ast.parse(source, feature_version=(3, 6))


def test_vermin_finds_nothing_newer_than_python36():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install vermin)")
    proc = subprocess.run([vermin, "--no-tips", "-t=3.6-", "--violations",
                           "device_agents/edgecost_agent.py"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_source_hygiene():
    source = AGENT.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            assert node.type is not None, "bare except at line %d" % node.lineno
        if isinstance(node, ast.keyword):
            assert node.arg not in ("shell", "capture_output", "text"), node.arg
    assert "os.system" not in source
    top_imports = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import)
                   for alias in node.names}
    top_imports |= {node.module.split(".")[0] for node in tree.body
                    if isinstance(node, ast.ImportFrom)}
    assert not top_imports & {"numpy", "onnxruntime", "torch", "ai_edge_litert", "tflite_runtime",
                              "onnx"}, "runtimes must be imported lazily"


def _python36():
    """A working Python 3.6 interpreter (pyenv shims that do not run are skipped)."""
    for candidate in PY36_CANDIDATES:
        if not candidate or not Path(candidate).exists():
            continue
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 6)":
            return candidate
    return None


def test_runs_under_a_real_python36(tmp_path, models, start_agent):
    python36 = _python36()
    if python36 is None:
        pytest.skip("no Python 3.6 interpreter here (set EDGECOST_TEST_PYTHON36)")
    version = subprocess.run([python36, str(AGENT), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "edgecost-agent" in version.stdout
    info = subprocess.run([python36, str(AGENT), "sysinfo", "--no-runtimes"], capture_output=True,
                          text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["result"]["python"]["version"].startswith("3.6")
    # EDGECOST_TEST_PY36_PATH may name a directory with numpy and onnxruntime built for
    # this interpreter (e.g. pip install --target DIR numpy==1.19.5 onnxruntime==1.3.0).
    site = os.environ.get("EDGECOST_TEST_PY36_PATH")
    agent36 = start_agent(python=python36, env={"PYTHONPATH": site} if site else None)
    assert agent36.hello["python"].startswith("3.6")
    assert agent36.request("ping")["result"] == {"pong": True}
    response = agent36.bench(model_path=str(models["conv_ir6"]), num_runs=3, min_secs=0,
                             warmup_min_secs=0, profile_runs=2, ort_optimization_level="extended")
    if response["ok"]:
        result = response["result"]
        assert result["stats"]["n"] == 3 and result["isolated"] is True
        assert "FusedConv" in [n["op_type"] for n in result["optimized_nodes"]]
        assert len(result["node_profile"]) == len(result["optimized_nodes"])
    else:  # this interpreter has no numpy/onnxruntime: it must say so
        assert response["error"]["kind"] == "runtime_missing", response
        assert "pip install" in response["error"]["message"]
    assert agent36.request("ping")["ok"]


# =====================================================================================
# Stats and warnings
# =====================================================================================


def test_latency_stats_match_numpy(agent):
    rng = np.random.default_rng(3)
    samples = list(rng.lognormal(1.0, 0.3, size=101))
    stats = agent.latency_stats(samples)
    assert stats["n"] == 101
    for key, q in (("median_ms", 50), ("p10_ms", 10), ("p90_ms", 90), ("p95_ms", 95),
                   ("p99_ms", 99)):
        assert stats[key] == pytest.approx(np.percentile(samples, q), rel=1e-6)
    assert stats["mean_ms"] == pytest.approx(np.mean(samples), rel=1e-6)
    assert stats["std_ms"] == pytest.approx(np.std(samples), rel=1e-6)
    assert stats["min_ms"] == pytest.approx(min(samples)) and stats["max_ms"] == pytest.approx(
        max(samples))
    one = agent.latency_stats([2.5])
    assert one["n"] == 1 and one["median_ms"] == one["p99_ms"] == 2.5 and one["std_ms"] == 0


def test_spread_warnings(agent):
    calm = agent.latency_stats([1.0, 1.01, 0.99, 1.0, 1.02])
    assert agent.spread_warnings(calm) == []
    noisy = agent.latency_stats([1.0, 1.5, 0.6, 1.4, 0.7, 1.0])
    [spread] = agent.spread_warnings(noisy)
    assert "std/median" in spread and "governor" in spread  # says how to quiet the machine
    spike = agent.latency_stats([1.0] * 99 + [5.0])
    assert any("3.0x" in w or "5.0x" in w for w in agent.spread_warnings(spike))
    tiny = agent.latency_stats([0.01, 0.0101, 0.0099])
    assert any("50 us" in w for w in agent.spread_warnings(tiny))


def test_environment_warnings(agent):
    quiet = {"governor": "performance", "cpu_freq_mhz_start": [1500.0], "cpu_freq_mhz_end":
             [1500.0], "max_temp_c_start": 40.0, "max_temp_c_end": 42.0}
    assert agent.environment_warnings(quiet) == []
    assert agent.environment_warnings({}) == []  # nothing readable: nothing to say
    loud = {"governor": "ondemand", "cpu_freq_mhz_start": [1500.0, 600.0],
            "cpu_freq_mhz_end": [900.0, 600.0], "max_temp_c_start": 45.0, "max_temp_c_end": 71.0}
    text = " | ".join(agent.environment_warnings(loud))
    assert "'ondemand'" in text and "performance" in text
    assert "1500 MHz" in text and "900 MHz" in text
    assert "45.0 C" in text and "71.0 C" in text


def test_timed_loop_semantics(agent):
    calls = []

    def run():
        calls.append(1)

    samples, _ = agent.timed_loop(run, min_runs=37, min_secs=0.0, max_secs=100.0)
    assert len(samples) == 37 == len(calls)  # num_runs met, min_secs met: stop exactly

    samples, elapsed = agent.timed_loop(run, min_runs=1, min_secs=0.15, max_secs=100.0)
    assert elapsed >= 0.15 and len(samples) > 1  # min_secs extends past num_runs

    samples, elapsed = agent.timed_loop(run, min_runs=10 ** 9, min_secs=100.0, max_secs=0.1)
    assert 0.1 <= elapsed < 2.0 and len(samples) < 10 ** 9  # max_secs caps both

    samples, _ = agent.timed_loop(run, min_runs=10, min_secs=10.0, max_secs=0.0)
    assert len(samples) == 1  # at least one timed run, always

    samples, elapsed = agent.timed_loop(run, min_runs=0, min_secs=0.0, max_secs=10.0,
                                        at_least_one=False)
    assert samples == [] and elapsed == 0.0  # warm-up may be off


# =====================================================================================
# Protobuf reader vs the onnx package
# =====================================================================================


def _onnx_attr(attr):
    from onnx import AttributeProto as A

    def tensor(t):
        return {"tensor": {"dims": list(t.dims), "data_type": t.data_type}}

    def graph(g):
        return {"graph": {"name": g.name, "num_nodes": len(g.node)}}

    return {
        A.FLOAT: lambda: attr.f, A.INT: lambda: attr.i, A.STRING: lambda: attr.s.decode(),
        A.FLOATS: lambda: list(attr.floats), A.INTS: lambda: list(attr.ints),
        A.STRINGS: lambda: [s.decode() for s in attr.strings], A.TENSOR: lambda: tensor(attr.t),
        A.GRAPH: lambda: graph(attr.g), A.TENSORS: lambda: [tensor(t) for t in attr.tensors],
        A.GRAPHS: lambda: [graph(g) for g in attr.graphs],
    }[attr.type]()


def onnx_nodes(path):
    """What the real onnx package reads, in the agent's representation."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return [{"name": n.name, "op_type": n.op_type, "domain": n.domain, "inputs": list(n.input),
             "outputs": list(n.output), "attrs": {a.name: _onnx_attr(a) for a in n.attribute}}
            for n in model.graph.node]


def ort_optimized(src, level, dst):
    """Save the model as ONNX Runtime optimizes it at ``level``; return dst."""
    import onnxruntime as ort

    levels = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[level])
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dst


def as_json(obj):
    return json.loads(json.dumps(obj))


def without_generated_names(nodes):
    """ORT numbers the nodes it inserts per process (``ReorderOutput_token_4``): drop that."""

    def strip(name):
        return re.sub(r"_token_\d+$", "", name)

    return [dict(n, name=strip(n["name"]), inputs=[strip(i) for i in n["inputs"]],
                 outputs=[strip(o) for o in n["outputs"]]) for n in nodes]


def test_protobuf_reader_reads_every_attribute_type(agent, models):
    expected = onnx_nodes(models["attribute_zoo"])
    got = as_json(agent.read_onnx_nodes(str(models["attribute_zoo"])))
    assert got == expected
    zoo = got[1]["attrs"]
    assert zoo["i"] == -3 and zoo["big"] == 2 ** 40 and zoo["ints"] == [-1, 0, 7, 2 ** 40]
    assert zoo["s"] == "héllo" and zoo["empty_ints"] == []
    assert zoo["t"] == {"tensor": {"dims": [2, 3], "data_type": 1}}
    assert zoo["g"] == {"graph": {"name": "then_branch", "num_nodes": 1}}
    assert got[0]["name"] == "" and got[2]["inputs"] == ["t1", "w", ""]


@pytest.mark.parametrize("model", ["conv", "mobilenet"])
@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_protobuf_reader_matches_onnx_on_ort_optimized_models(agent, models, tmp_path, model,
                                                               level):
    path = ort_optimized(models[model], level, tmp_path / "opt.onnx")
    expected = onnx_nodes(path)
    assert as_json(agent.read_onnx_nodes(str(path))) == expected
    op_types = {n["op_type"] for n in expected}
    if level == "extended":
        assert "FusedConv" in op_types
    if model == "mobilenet" and level != "basic":
        fused = [n for n in expected if n["op_type"] in ("FusedConv", "Conv") and
                 n["attrs"].get("activation") == "Clip"]
        assert fused and fused[0]["attrs"]["activation_params"] == [0.0, 6.0]


def test_protobuf_reader_packed_repeated_fields(agent):
    """proto3-style packed ints/floats (other writers emit them) decode like unpacked ones."""

    def varint(v):
        v &= (1 << 64) - 1
        out = bytearray()
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    def field(num, wire, payload):
        key = varint(num << 3 | wire)
        return key + (varint(len(payload)) + payload if wire == 2 else payload)

    import struct

    ints = b"".join(varint(v) for v in (3, -1, 300))
    attr_i = field(1, 2, b"pads") + field(8, 2, ints) + field(20, 0, varint(7))
    attr_f = field(1, 2, b"scales") + field(7, 2, struct.pack("<2f", 0.5, 2.0)) + field(
        20, 0, varint(6))
    node = field(4, 2, b"Pad") + field(1, 2, b"x") + field(2, 2, b"y") + field(
        5, 2, attr_i) + field(5, 2, attr_f)
    model = field(1, 0, varint(8)) + field(7, 2, field(1, 2, node))
    [parsed] = agent.parse_onnx_nodes(model)
    assert parsed["op_type"] == "Pad" and parsed["inputs"] == ["x"] and parsed["outputs"] == ["y"]
    assert parsed["attrs"] == {"pads": [3, -1, 300], "scales": [0.5, 2.0]}


def test_protobuf_reader_rejects_truncated_files(agent, models, tmp_path):
    data = Path(models["mobilenet"]).read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(agent.ProtobufError):
        agent.read_onnx_nodes(str(truncated))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(agent.ProtobufError):
        agent.read_onnx_nodes(str(empty))


def test_aggregate_ort_profile_skips_warmup_and_keeps_order(agent):
    def node(name, ts, dur, op="Conv"):
        return {"cat": "Node", "name": name + "_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": op, "provider": "CPUExecutionProvider",
                         "input_type_shape": [{"float": [1, 3, 8, 8]}, {"float": [4, 3, 1, 1]}],
                         "output_type_shape": [{"float": [1, 4, 8, 8]}]}}

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        node("a", 10, 500), node("b", 60, 500, "Relu"),  # warm-up run: ignored
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        node("b", 260, 4, "Relu"), node("a", 210, 10),  # out of order in the file
        {"cat": "Node", "name": "a_fence_before", "ts": 205, "dur": 0},
        {"cat": "Session", "name": "model_run", "ts": 400, "dur": 100},
        node("a", 410, 20), node("b", 460, 6, "Relu"),
    ]
    profile = agent.aggregate_ort_profile(events, skip_runs=1)
    assert [p["name"] for p in profile] == ["a", "b"]
    a, b = profile
    assert a["n"] == 2 and a["median_us"] == 15.0 and a["mean_us"] == 15.0 and a["min_us"] == 10.0
    assert a["op_type"] == "Conv" and a["input_shapes"] == [[1, 3, 8, 8], [4, 3, 1, 1]]
    assert a["output_shapes"] == [[1, 4, 8, 8]] and a["input_dtypes"] == ["float", "float"]
    assert b["op_type"] == "Relu" and b["median_us"] == 5.0 and b["min_us"] == 4.0


# =====================================================================================
# Fake sysfs trees, laid out as on real boards
# =====================================================================================


def put(root, path, text=""):
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def link(root, path, relative_target, make_target_dir=True):
    """A relative symlink, as sysfs has them (absolute links would escape the sysroot)."""
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    if make_target_dir:
        (where.parent / relative_target).resolve().mkdir(parents=True, exist_ok=True)
    where.symlink_to(relative_target)


def put_cpufreq(root, cpus, cur_khz, min_khz, max_khz, governor):
    for cpu in range(cpus):
        base = "/sys/devices/system/cpu/cpu%d/cpufreq/" % cpu
        put(root, base + "scaling_cur_freq", "%d\n" % cur_khz)
        put(root, base + "cpuinfo_min_freq", "%d\n" % min_khz)
        put(root, base + "cpuinfo_max_freq", "%d\n" % max_khz)
        put(root, base + "scaling_governor", governor + "\n")
    put(root, "/sys/devices/system/cpu/online", "0-%d\n" % (cpus - 1))


def put_thermal(root, zones):
    for i, (kind, millideg) in enumerate(zones):
        put(root, "/sys/class/thermal/thermal_zone%d/type" % i, kind + "\n")
        put(root, "/sys/class/thermal/thermal_zone%d/temp" % i, "%d\n" % millideg)


ARM64_CORE = """processor\t: {n}
model name\t: ARMv8 Processor rev 1 (v8l)
BogoMIPS\t: 38.40
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32
CPU implementer\t: {impl}
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: {part}
CPU revision\t: 1

"""


def fake_x86_server(root):
    cores = "".join(
        "processor\t: %d\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU "
        "E5-2680 v4 @ 2.40GHz\nflags\t\t: fpu sse avx avx2 fma f16c\n\n" % i for i in range(2))
    put(root, "/proc/cpuinfo", cores)
    put(root, "/proc/meminfo", "MemTotal:       16318480 kB\nMemFree:         1000 kB\n"
        "MemAvailable:   12288000 kB\n")
    put(root, "/etc/os-release", 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nID=ubuntu\n'
        'VERSION_ID="22.04"\n')
    put(root, "/sys/class/dmi/id/sys_vendor", "Dell Inc.\n")
    put(root, "/sys/class/dmi/id/product_name", "PowerEdge R640\n")
    put_cpufreq(root, 2, 2400000, 1200000, 3300000, "powersave")
    put_thermal(root, [("x86_pkg_temp", 45000), ("acpitz", 27800)])
    rapl = "/sys/devices/virtual/powercap/intel-rapl/"
    for zone, name, energy in (("intel-rapl:0", "package-0", 123456789),
                               ("intel-rapl:0/intel-rapl:0:0", "core", 5000),
                               ("intel-rapl:0/intel-rapl:0:1", "dram", 7000),
                               ("intel-rapl:1", "package-1", 42)):
        put(root, rapl + zone + "/name", name + "\n")
        put(root, rapl + zone + "/energy_uj", "%d\n" % energy)
        put(root, rapl + zone + "/max_energy_range_uj", "262143328850\n")
        put(root, rapl + zone + "/enabled", "1\n")
        link(root, "/sys/class/powercap/" + zone.split("/")[-1],
             "../../devices/virtual/powercap/intel-rapl/" + zone)
    link(root, "/sys/class/powercap/intel-rapl", "../../devices/virtual/powercap/intel-rapl")
    hwmon = "/sys/devices/platform/coretemp.0/hwmon/hwmon0/"
    put(root, hwmon + "name", "coretemp\n")
    put(root, hwmon + "temp1_input", "45000\n")
    link(root, "/sys/class/hwmon/hwmon0", "../../devices/platform/coretemp.0/hwmon/hwmon0")
    gpu = "/sys/devices/pci0000:00/0000:00:02.0/hwmon/hwmon1/"
    put(root, gpu + "name", "amdgpu\n")
    put(root, gpu + "power1_average", "35000000\n")  # µW
    put(root, gpu + "power1_label", "PPT\n")
    link(root, "/sys/class/hwmon/hwmon1", "../../devices/pci0000:00/0000:00:02.0/hwmon/hwmon1")


def fake_jetson_nano(root):
    """L4T 32.7 on a Jetson Nano: ina3221x iio rails, PMIC-Die stuck at 100 C."""
    put(root, "/proc/cpuinfo", "".join(ARM64_CORE.format(n=i, impl="0x41", part="0xd07")
                                       for i in range(4)))
    put(root, "/proc/meminfo", "MemTotal:        4059356 kB\nMemAvailable:    2811264 kB\n")
    put(root, "/proc/device-tree/model", "NVIDIA Jetson Nano Developer Kit\x00")
    put(root, "/etc/nv_tegra_release", "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: "
        "t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n")
    put(root, "/etc/os-release", 'PRETTY_NAME="Ubuntu 18.04.6 LTS"\nID=ubuntu\nVERSION_ID="18.04"\n')
    put_cpufreq(root, 4, 1479000, 102000, 1479000, "schedutil")
    put_thermal(root, [("AO-therm", 39500), ("CPU-therm", 33500), ("GPU-therm", 32000),
                       ("PLL-therm", 31000), ("PMIC-Die", 100000), ("thermal-fan-est", 33400)])
    device = "/sys/devices/7000c000.i2c/i2c-6/6-0040/iio:device0/"
    for channel, (rail, power_mw) in enumerate((("POM_5V_IN", 2350), ("POM_5V_GPU", 40),
                                                ("POM_5V_CPU", 580))):
        put(root, device + "rail_name_%d" % channel, rail + "\n")
        put(root, device + "in_power%d_input" % channel, "%d\n" % power_mw)
        put(root, device + "in_current%d_input" % channel, "%d\n" % (power_mw * 1000 // 5000))
        put(root, device + "in_voltage%d_input" % channel, "5000\n")
    link(root, "/sys/bus/i2c/drivers/ina3221x/6-0040", "../../../../devices/7000c000.i2c/i2c-6/6-0040")


def fake_jetson_tx2(root):
    """L4T 32 on a TX2: two ina3221x devices (0-0040 and 0-0041), six rails."""
    put(root, "/proc/cpuinfo", "".join(ARM64_CORE.format(n=i, impl="0x41", part="0xd07")
                                       for i in range(4)) +
        "".join(ARM64_CORE.format(n=i, impl="0x4e", part="0x003") for i in (4, 5)))
    put(root, "/proc/device-tree/model", "quill\x00")
    put(root, "/etc/nv_tegra_release", "# R32 (release), REVISION: 4.3, GCID: 21589087, BOARD: "
        "t186ref, EABI: aarch64, DATE: Fri Jun 26 04:34:27 UTC 2020\n")
    rails = {"0-0040/iio:device0": ("VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI"),
             "0-0041/iio:device1": ("VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR")}
    for device, names in rails.items():
        for channel, rail in enumerate(names):
            put(root, "/sys/bus/i2c/drivers/ina3221x/%s/rail_name_%d" % (device, channel), rail)
            put(root, "/sys/bus/i2c/drivers/ina3221x/%s/in_power%d_input" % (device, channel),
                "%d\n" % (100 * (channel + 1)))


def fake_jetson_orin(root):
    """L4T 35/36 on an Orin: ina3221 under hwmon, rails by label, 'NC' and sum channels."""
    put(root, "/proc/cpuinfo", "".join(ARM64_CORE.format(n=i, impl="0x41", part="0xd42")
                                       for i in range(6)))
    put(root, "/proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    put(root, "/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: "
        "generic, EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n")
    put_cpufreq(root, 6, 2201600, 115200, 2201600, "schedutil")
    i2c = "/sys/devices/platform/bus@0/c240000.i2c/i2c-1/"
    devices = {"1-0040": ("hwmon3", [("VDD_GPU_SOC", 5072, 1424), ("VDD_CPU_CV", 5072, 400),
                                     ("VIN_SYS_5V0", 5016, 904)]),
               "1-0041": ("hwmon4", [("VDDQ_VDD2_1V8AO", 4984, 120), ("NC", 0, 0)])}
    for address, (hwmon, channels) in devices.items():
        base = i2c + address + "/hwmon/" + hwmon + "/"
        put(root, base + "name", "ina3221\n")
        for n, (label, mv, ma) in enumerate(channels, start=1):
            put(root, base + "in%d_label" % n, label + "\n")
            put(root, base + "in%d_input" % n, "%d\n" % mv)
            put(root, base + "curr%d_input" % n, "%d\n" % ma)
        put(root, base + "in7_label", "sum of shunt voltages\n")
        put(root, base + "in7_input", "12\n")
        link(root, "/sys/class/hwmon/" + hwmon,
             "../../devices/platform/bus@0/c240000.i2c/i2c-1/%s/hwmon/%s" % (address, hwmon))
        link(root, "/sys/bus/i2c/drivers/ina3221/" + address,
             "../../../../devices/platform/bus@0/c240000.i2c/i2c-1/" + address)


def fake_raspberry_pi4(root):
    """Raspberry Pi OS 32-bit on a Pi 4: ARMv7 'model name', Hardware/Model lines."""
    cores = "".join(
        "processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
        "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae crc32\n"
        "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n" % i for i in range(4))
    put(root, "/proc/cpuinfo", cores + "Hardware\t: BCM2711\nRevision\t: c03114\n"
        "Serial\t\t: 10000000abcdef01\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    put(root, "/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    put(root, "/proc/meminfo", "MemTotal:        3884096 kB\nMemAvailable:    3400000 kB\n")
    put_cpufreq(root, 4, 600000, 600000, 1800000, "ondemand")
    put_thermal(root, [("cpu-thermal", 48312)])


def fake_tools(tmp_path):
    """nvpmodel, vcgencmd and nvidia-smi stand-ins on a PATH directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "nvpmodel": "echo 'NVPM WARN: fan mode is not set!'\necho 'NV Power Mode: MAXN'\necho 0\n",
        "vcgencmd": "echo 'throttled=0x50005'\n",
        "nvidia-smi": "echo 'NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB'\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return str(bin_dir) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def sysroot(tmp_path, monkeypatch):
    root = tmp_path / "sysroot"
    root.mkdir()
    monkeypatch.setenv("EDGECOST_AGENT_SYSROOT", str(root))
    monkeypatch.setenv("PATH", "/nonexistent")  # no host tools unless a test adds fakes
    return root


# =====================================================================================
# Sensors
# =====================================================================================


def test_rapl_zones_on_x86(agent, sysroot):
    fake_x86_server(sysroot)
    sensors = agent.discover_sensors()
    rapl = [s for s in sensors if s.kind == "rapl"]
    assert [s.name for s in rapl] == ["package-0", "package-0/core", "package-0/dram",
                                      "package-1"]
    package = rapl[0]
    assert package.unit == "uJ" and package.max_energy_range_uj == 262143328850
    assert package.read_energy_uj() == 123456789
    described = package.describe()
    assert described["paths"][0] == "/sys/class/powercap/intel-rapl:0/energy_uj"
    assert described["readable"] is True
    hwmon = [s for s in sensors if s.kind == "hwmon"]
    assert [s.name for s in hwmon] == ["amdgpu/PPT"]  # coretemp has no power sensor
    assert hwmon[0].read_power_mw() == pytest.approx(35000.0)
    assert [s.kind for s in sensors] == ["rapl"] * 4 + ["hwmon"]  # probing order


def test_energy_counter_wraps_around(agent, sysroot):
    fake_x86_server(sysroot)
    package = agent.discover_sensors()[0]
    energy_file = sysroot / "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"
    energy_file.write_text("262143000000\n")
    start = package.read_energy_uj()
    energy_file.write_text("1000\n")  # the counter passed max_energy_range_uj
    end = package.read_energy_uj()
    assert package.energy_between_uj(start, end) == 262143328850 - 262143000000 + 1000
    assert package.energy_between_uj(1000, 5000) == 4000
    assert agent.energy_delta_uj(10, 10, None) == 0
    with pytest.raises(agent.SensorError):
        agent.energy_delta_uj(10, 5, None)  # backwards with an unknown range
    energy_file.unlink()
    with pytest.raises(agent.SensorError):
        package.read_energy_uj()
    assert agent.energy_from_power_mj([0.0, 1.0, 2.0], [1000.0, 3000.0, 3000.0]) == 5000.0


def test_jetson_nano_ina3221x_rails(agent, sysroot):
    fake_jetson_nano(sysroot)
    rails = agent.discover_sensors()
    assert [(r.kind, r.name) for r in rails] == [
        ("jetson_ina3221x", "POM_5V_IN"), ("jetson_ina3221x", "POM_5V_GPU"),
        ("jetson_ina3221x", "POM_5V_CPU")]
    assert [r.read_power_mw() for r in rails] == [2350.0, 40.0, 580.0]
    assert rails[0].describe()["paths"] == [
        "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input"]


def test_jetson_tx2_ina3221x_two_devices(agent, sysroot):
    fake_jetson_tx2(sysroot)
    rails = agent.discover_sensors()
    assert [r.name for r in rails] == ["VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN",
                                       "VDD_SYS_CPU", "VDD_SYS_DDR"]
    assert rails[3].read_power_mw() == 100.0


def test_jetson_orin_ina3221_hwmon_rails_by_label(agent, sysroot):
    fake_jetson_orin(sysroot)
    rails = agent.discover_sensors()
    # NC and the "sum of shunt voltages" channel are skipped; each device is found once
    # although it is reachable from /sys/class/hwmon and /sys/bus/i2c/drivers/ina3221.
    assert [(r.kind, r.name) for r in rails] == [
        ("jetson_ina3221", "VDD_GPU_SOC"), ("jetson_ina3221", "VDD_CPU_CV"),
        ("jetson_ina3221", "VIN_SYS_5V0"), ("jetson_ina3221", "VDDQ_VDD2_1V8AO")]
    assert rails[0].read_power_mw() == pytest.approx(1424 * 5072 / 1000.0)
    assert rails[0].unit == "mW"
    assert rails[0].describe()["paths"] == ["/sys/class/hwmon/hwmon3/curr1_input",
                                            "/sys/class/hwmon/hwmon3/in1_input"]


def test_no_sensors_is_an_empty_list(agent, sysroot):
    assert agent.discover_sensors() == []


# =====================================================================================
# sysinfo on fake trees
# =====================================================================================


def test_sysinfo_x86_server(agent, sysroot, tmp_path, monkeypatch):
    fake_x86_server(sysroot)
    monkeypatch.setenv("PATH", fake_tools(tmp_path))
    info = as_json(agent.sysinfo(probe=False))
    cpu = info["cpu"]
    assert cpu["model_name"] == "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"
    assert cpu["logical_cores"] == 2 and {"avx2", "fma"} <= set(cpu["isa_features"])
    assert cpu["governor"] == "powersave" and cpu["governors"] == ["powersave"]
    assert cpu["freqs"][0] == {"cpu": 0, "cur_mhz": 2400.0, "min_mhz": 1200.0, "max_mhz": 3300.0,
                               "governor": "powersave"}
    assert info["memory"] == {"total_mb": pytest.approx(15936.0, abs=1),
                              "available_mb": 12000.0}
    assert info["board"]["model"] == "Dell Inc. PowerEdge R640"
    assert info["os"]["distro"] == "Ubuntu 22.04.4 LTS" and info["os"]["distro_version"] == "22.04"
    assert info["max_temp_c"] == 45.0 and len(info["thermal_zones"]) == 2
    assert info["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15",
                             "memory_total_mb": 81559.0}]
    assert [s["kind"] for s in info["power_sensors"]] == ["rapl"] * 4 + ["hwmon"]
    assert info["jetson"] is None
    assert info["runtimes"] is None and info["missing_runtimes"] is None


def test_sysinfo_jetson_nano(agent, sysroot, tmp_path, monkeypatch):
    fake_jetson_nano(sysroot)
    monkeypatch.setenv("PATH", fake_tools(tmp_path))
    info = as_json(agent.sysinfo(probe=False))
    assert info["cpu"]["model_name"] == "Cortex-A57"
    assert info["cpu"]["arm_cores"] == [{"core": "Cortex-A57", "count": 4}]
    assert info["cpu"]["governor"] == "schedutil" and info["cpu"]["logical_cores"] == 4
    assert info["board"]["model"] == "NVIDIA Jetson Nano Developer Kit"
    jetson = info["jetson"]
    assert jetson["l4t_release"] == "32.7.1" and jetson["nv_tegra_release"].startswith("# R32")
    assert jetson["power_mode"] == "MAXN" and jetson["power_mode_id"] == 0
    assert info["max_temp_c"] == 39.5  # PMIC-Die (stuck at 100 C) is not a die temperature
    assert [s["name"] for s in info["power_sensors"]] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]


def test_sysinfo_jetson_without_nvpmodel_and_mixed_cores(agent, sysroot):
    fake_jetson_tx2(sysroot)
    info = as_json(agent.sysinfo(probe=False))
    assert info["jetson"]["l4t_release"] == "32.4.3" and info["jetson"]["power_mode"] is None
    assert info["cpu"]["model_name"] == "4x Cortex-A57 + 2x Denver 2"
    assert info["cpu"]["governor"] is None  # no cpufreq in this tree: unknown, not a guess


def test_sysinfo_raspberry_pi(agent, sysroot, tmp_path, monkeypatch):
    fake_raspberry_pi4(sysroot)
    monkeypatch.setenv("PATH", fake_tools(tmp_path))
    info = as_json(agent.sysinfo(probe=False))
    assert info["cpu"]["model_name"] == "Cortex-A72"
    assert info["cpu"]["cpuinfo_model_name"] == "ARMv7 Processor rev 3 (v7l)"
    assert info["cpu"]["arm_cores"] == [{"core": "Cortex-A72", "count": 4}]
    assert info["cpu"]["hardware"] == "BCM2711" and "neon" in info["cpu"]["isa_features"]
    assert info["board"]["model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert info["raspberry_pi"] == {"throttled": "0x50005", "throttled_flags": [
        "under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"]}
    assert info["cpu"]["freqs"][0]["max_mhz"] == 1800.0 and info["max_temp_c"] == 48.312
    assert info["power_sensors"] == [] and info["jetson"] is None


def test_sysinfo_cli_with_runtime_probes():
    proc = run_cli("sysinfo")
    assert proc.returncode == 0, proc.stderr
    info = cli_json(proc)["result"]
    runtimes = info["runtimes"]
    assert runtimes["onnxruntime"]["available"] and runtimes["onnxruntime"]["version"]
    assert "CPUExecutionProvider" in runtimes["onnxruntime"]["providers"]
    assert runtimes["ai_edge_litert"]["available"] and runtimes["numpy"]["available"]
    assert set(info["available_runtimes"]) >= {"onnxruntime", "tflite"}
    for name in info["missing_runtimes"]:
        assert runtimes[name]["install_hint"].startswith("pip install")
    assert info["python"]["executable"] == sys.executable


# =====================================================================================
# bench through `serve` (one agent process for the session)
# =====================================================================================


def check_stats(stats, min_n=1):
    assert stats["n"] >= min_n
    assert stats["min_ms"] <= stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    assert stats["p90_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert stats["min_ms"] <= stats["mean_ms"] <= stats["max_ms"] and stats["std_ms"] >= 0
    assert stats["min_ms"] > 0


def test_serve_hello_and_ping(served):
    hello = served.hello
    assert hello["hello"] == "edgecost-agent" and hello["protocol_version"] == 1
    assert hello["agent_version"] and hello["pid"] == served.proc.pid and hello["isolation"]
    assert served.request("ping") == {"id": served._next_id, "ok": True, "result": {"pong": True}}


def test_bench_onnxruntime(served, models):
    response = served.bench(model_path=str(models["conv"]), num_runs=20, min_secs=0,
                            warmup_runs=2, warmup_min_secs=0, return_samples=True)
    assert response["ok"], response
    result = response["result"]
    check_stats(result["stats"], min_n=20)
    assert result["stats"]["n"] == 20 and len(result["samples_ms"]) == 20
    assert result["stats"]["median_ms"] == pytest.approx(np.median(result["samples_ms"]),
                                                         rel=1e-3)
    assert result["runtime"] == result["runtime_module"] == "onnxruntime"
    assert result["provider"] == "CPUExecutionProvider"
    assert result["providers"] == ["CPUExecutionProvider"]
    assert result["ort_optimization_level"] == "all" and result["xnnpack"] is None
    assert result["isolated"] is True and result["schema_version"] == 1
    assert result["inputs"] == [{"name": "x", "shape": [1, 3, 16, 16], "dtype": "float32"}]
    assert result["init_ms"] > 0 and result["first_inference_ms"] > 0
    assert result["warmup"]["n"] == 2 and result["warmup"]["mean_ms"] > 0
    assert result["node_profile"] is None and result["optimized_nodes"] is None
    assert set(result["environment"]) >= {"governor", "cpu_freq_mhz_start", "cpu_freq_mhz_end",
                                          "max_temp_c_start", "max_temp_c_end"}
    assert result["total_secs"] >= result["timed_secs"] > 0


def test_bench_min_secs_extends_and_max_secs_caps(served, models):
    path = str(models["conv"])
    extended = served.bench(model_path=path, num_runs=1, min_secs=0.3, warmup_runs=0,
                            warmup_min_secs=0)["result"]
    assert extended["timed_secs"] >= 0.3 and extended["stats"]["n"] > 1
    capped = served.bench(model_path=path, num_runs=10 ** 9, min_secs=100.0, max_secs=0.2,
                          warmup_runs=0, warmup_min_secs=0)["result"]
    assert 0.2 <= capped["timed_secs"] < 3.0 and capped["stats"]["n"] < 10 ** 9
    one = served.bench(model_path=path, num_runs=50, min_secs=1.0, max_secs=0.0,
                       warmup_runs=0, warmup_min_secs=0)["result"]
    assert one["stats"]["n"] == 1 and one["warmup"] == {"n": 0, "mean_ms": None}


def test_bench_warmup_until_runs_and_secs(served, models):
    result = served.bench(model_path=str(models["conv"]), num_runs=1, min_secs=0,
                          warmup_runs=3, warmup_min_secs=0.2)["result"]
    assert result["warmup"]["n"] > 3  # 3 runs take far less than 0.2 s on this model


def test_bench_onnxruntime_profile_extended(served, models, tmp_path):
    response = served.bench(model_path=str(models["mobilenet"]), profile_runs=4,
                            ort_optimization_level="extended", threads=2, **QUICK_ARGS)
    assert response["ok"], response
    result = response["result"]
    expected = onnx_nodes(ort_optimized(models["mobilenet"], "extended", tmp_path / "opt.onnx"))
    assert without_generated_names(result["optimized_nodes"]) == without_generated_names(
        expected)
    assert "FusedConv" in {n["op_type"] for n in result["optimized_nodes"]}
    profile = result["node_profile"]
    assert [p["name"] for p in profile] == [  # every executed kernel, in execution order
        n["name"] for n in result["optimized_nodes"]]
    for entry in profile:
        assert entry["n"] == 4 and entry["median_us"] >= 0 and entry["mean_us"] >= 0
        assert entry["provider"] == "CPUExecutionProvider"
    stem = profile[0]
    assert stem["op_type"] == "FusedConv"
    assert stem["input_shapes"] == [[1, 3, 32, 32], [16, 3, 3, 3], [16]]
    assert stem["output_shapes"] == [[1, 16, 16, 16]]
    assert result["profile_secs"] > 0 and result["threads"] == 2


def test_bench_onnxruntime_profile_all_levels(served, models, tmp_path):
    for level in ("disable", "all"):
        result = served.bench(model_path=str(models["conv"]), profile_runs=2,
                              ort_optimization_level=level, **QUICK_ARGS)["result"]
        if level == "disable":
            assert [n["op_type"] for n in result["optimized_nodes"]] == [
                "Conv", "Relu", "Conv", "Add", "Relu"]
            continue
        expected = onnx_nodes(ort_optimized(models["conv"], "all", tmp_path / "all.onnx"))
        assert without_generated_names(result["optimized_nodes"]) == without_generated_names(
            expected)
        assert [p["name"] for p in result["node_profile"]] == [
            n["name"] for n in result["optimized_nodes"]]
        domains = {n["domain"] for n in expected}
        if "com.microsoft.nchwc" not in domains:
            pytest.skip("this CPU gets no NCHWc kernels from onnxruntime")
        assert {p["op_type"] for p in result["node_profile"]} >= {"Conv", "ReorderOutput"}
        nchwc = [n for n in result["optimized_nodes"] if n["domain"] == "com.microsoft.nchwc"]
        assert any(n["attrs"].get("activation") == "Relu" for n in nchwc)


def test_bench_litert_xnnpack_default_and_off(served, tflite_model):
    on = served.bench(model_path=str(tflite_model), threads=2, **QUICK_ARGS)
    assert on["ok"], on
    on = on["result"]
    check_stats(on["stats"], min_n=5)
    assert on["runtime"] == "tflite" and on["runtime_module"] in ("ai_edge_litert",
                                                                  "tflite_runtime")
    assert on["xnnpack"] is True and on["xnnpack_applied"] is True
    assert "DELEGATE" in on["tflite_ops"] and on["runtime_version"]
    assert on["inputs"][0]["shape"] == [1, 3, 16, 16]
    off = served.bench(model_path=str(tflite_model), xnnpack=False, **QUICK_ARGS)["result"]
    assert off["xnnpack"] is False and off["xnnpack_applied"] is False
    assert "DELEGATE" not in off["tflite_ops"] and "CONV_2D" in off["tflite_ops"]
    check_stats(off["stats"], min_n=5)


def test_bench_torch_script_export_and_fp16(served, torch_models):
    shapes = {"x": [1, 3, 16, 16]}
    for path in (torch_models["pt"], torch_models["pt2"]):
        response = served.bench(model_path=str(path), input_shapes=shapes, **QUICK_ARGS)
        assert response["ok"], response
        check_stats(response["result"]["stats"], min_n=5)
        assert response["result"]["runtime_module"] == "torch"
    half = served.bench(model_path=str(torch_models["pt"]), input_shapes=shapes,
                        precision="fp16", **QUICK_ARGS)
    assert half["ok"], half
    assert half["result"]["inputs"][0]["dtype"] == "float16"
    assert half["result"]["precision"] == "fp16"
    missing = served.bench(model_path=str(torch_models["pt"]), **QUICK_ARGS)
    assert missing["error"]["kind"] == "bad_request" and "input_shapes" in missing["error"][
        "message"]


def test_bench_dynamic_dims(served, models):
    path = str(models["conv_dynamic"])
    refused = served.bench(model_path=path, **QUICK_ARGS)
    assert refused["error"]["kind"] == "bad_request"
    message = refused["error"]["message"]
    assert "'x'" in message and "dimension 0" in message and "batch" in message
    fixed = served.bench(model_path=path, input_shapes={"x": [2, 3, 16, 16]}, **QUICK_ARGS)
    assert fixed["ok"], fixed
    assert fixed["result"]["inputs"][0]["shape"] == [2, 3, 16, 16]
    for bad_shapes in ({"x": [2, 3, 16]}, {"x": [2, 3, 16, 17]}, {"nope": [1]}):
        response = served.bench(model_path=path, input_shapes=bad_shapes, **QUICK_ARGS)
        assert response["error"]["kind"] == "bad_request", bad_shapes


def test_bench_bad_requests(served, models):
    path = str(models["conv"])
    for args in ({}, {"model_path": path, "num_runs": 0}, {"model_path": path, "threads": "2"},
                 {"model_path": path, "ort_optimization_level": "max"},
                 {"model_path": path, "xnnpack": "yes"}, {"model_path": "model.bin"},
                 {"model_path": path, "runtime": "tensorrt"},
                 {"model_path": path, "providers": ["NoSuchExecutionProvider"]}):
        response = served.request("bench", args)
        assert response["ok"] is False and response["error"]["kind"] == "bad_request", args
    unknown = served.bench(model_path=path, future_field=1, **QUICK_ARGS)
    assert unknown["ok"] and "future_field" in unknown["result"]["warnings"][0]


def test_serve_malformed_lines_and_unknown_cmd(served):
    served.send_raw("this is not json\n")
    response = served.read_line()
    assert response["id"] is None and response["error"]["kind"] == "bad_request"
    served.send_raw("[1, 2]\n")
    assert served.read_line()["error"]["kind"] == "bad_request"
    served.send_raw("\n")  # blank lines are ignored: no response
    unknown = served.request("reboot")
    assert unknown["error"]["kind"] == "bad_request" and "reboot" in unknown["error"]["message"]
    served.send_raw(json.dumps({"id": "x1", "cmd": "bench", "args": [1]}) + "\n")
    not_object = served.read_line()
    assert not_object["id"] == "x1" and not_object["error"]["kind"] == "bad_request"
    assert served.request("ping")["ok"]


def test_missing_and_rejected_models(served, models, tflite_model, tmp_path):
    missing = served.bench(model_path=str(tmp_path / "nope.onnx"))
    assert missing["error"]["kind"] == "model_not_found" and "nope.onnx" in missing["error"][
        "message"]
    data = Path(models["mobilenet"]).read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    rejected = served.bench(model_path=str(truncated), **QUICK_ARGS)
    assert rejected["error"]["kind"] == "model_rejected", rejected
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00not a flatbuffer" * 64)
    rejected = served.bench(model_path=str(garbage), **QUICK_ARGS)
    assert rejected["error"]["kind"] == "model_rejected", rejected
    not_torchscript = tmp_path / "garbage.pt"
    not_torchscript.write_bytes(b"garbage")
    rejected = served.bench(model_path=str(not_torchscript), input_shapes={"x": [1]},
                            **QUICK_ARGS)
    assert rejected["error"]["kind"] == "model_rejected", rejected
    assert served.bench(model_path=str(models["conv"]), **QUICK_ARGS)["ok"]


@pytest.mark.parametrize("hook, kind, words", [
    ("segv", "crash", "SIGSEGV"), ("abort", "crash", "SIGABRT"), ("sigkill", "oom", "SIGKILL"),
    ("memory_error", "oom", "MemoryError"), ("raise", "internal_error", "test hook")])
def test_worker_failures_do_not_stop_the_agent(served, models, hook, kind, words):
    response = served.bench(model_path=str(models["conv"]), test_hook=hook, **QUICK_ARGS)
    assert response["ok"] is False
    assert response["error"]["kind"] == kind and words in response["error"]["message"]
    assert served.proc.poll() is None
    after = served.bench(model_path=str(models["conv"]), **QUICK_ARGS)
    assert after["ok"], after


def test_worker_timeout(served, models):
    start = time.monotonic()
    response = served.bench(model_path=str(models["conv"]), num_runs=1, min_secs=30,
                            max_secs=60, timeout_secs=0.5, timeout=30)
    assert response["error"]["kind"] == "timeout" and "timeout_secs" in response["error"][
        "message"]
    assert time.monotonic() - start < 10
    assert served.request("ping")["ok"]


def test_in_process_bench(served, models):
    response = served.bench(model_path=str(models["conv"]), isolate=False, **QUICK_ARGS)
    assert response["ok"] and response["result"]["isolated"] is False
    check_stats(response["result"]["stats"], min_n=5)


def test_heartbeats_while_a_bench_runs(served, models):
    """heartbeat_secs > 0: progress lines with the request's id until the one response."""
    served._next_id += 1
    request_id = served._next_id
    served.send_raw(json.dumps({"id": request_id, "cmd": "bench", "args": dict(
        model_path=str(models["conv"]), num_runs=1, min_secs=1.0, warmup_runs=0,
        warmup_min_secs=0, heartbeat_secs=0.1)}) + "\n")
    beats = []
    while True:
        line = served.read_line(timeout=60)
        assert line["id"] == request_id, line
        if "ok" in line:
            break
        assert line["heartbeat"] is True and set(line) == {"id", "heartbeat", "elapsed_s"}
        beats.append(line["elapsed_s"])
    assert line["ok"], line
    assert "heartbeat_secs" not in " ".join(line["result"]["warnings"])  # a known field
    assert len(beats) >= 3 and beats == sorted(beats) and beats[0] > 0
    assert served.hello["heartbeat"] is True
    # Without heartbeat_secs (the default, 0) the response is the only line.
    quiet = served.bench(model_path=str(models["conv"]), **QUICK_ARGS)
    assert quiet["ok"] and "heartbeat" not in quiet
    bad = served.bench(model_path=str(models["conv"]), heartbeat_secs=-1, **QUICK_ARGS)
    assert bad["error"]["kind"] == "bad_request" and "heartbeat_secs" in bad["error"]["message"]


def test_runtime_probe_without_exec_falls_back_to_forked_imports(tmp_path):
    """Under qemu-user, exec of sys.executable fails with ENOEXEC: sysinfo still probes."""
    not_a_program = tmp_path / "python-for-another-cpu"
    not_a_program.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    not_a_program.chmod(0o755)
    script = ("import importlib.util, sys\n"
              "spec = importlib.util.spec_from_file_location('agent', sys.argv[1])\n"
              "agent = importlib.util.module_from_spec(spec); spec.loader.exec_module(agent)\n"
              "sys.executable = sys.argv[2]\n"
              "sys.exit(agent.main(['sysinfo']))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(AGENT), str(not_a_program)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "probing without exec" in proc.stderr
    info = cli_json(proc)["result"]
    assert info["runtimes"]["numpy"]["available"]
    assert info["runtimes"]["onnxruntime"]["available"]
    assert "CPUExecutionProvider" in info["runtimes"]["onnxruntime"]["providers"]
    assert "onnxruntime" in info["available_runtimes"]
    for name in info["missing_runtimes"]:
        assert info["runtimes"][name]["install_hint"].startswith("pip install")


def test_serve_sysinfo_is_cached_and_cheap_without_probes(served):
    quick_info = served.request("sysinfo", {"probe_runtimes": False})["result"]
    assert quick_info["runtimes"] is None and quick_info["agent_version"]
    assert quick_info["python"]["version"] == served.hello["python"]


def test_protocol_stream_stays_clean(served, models):
    """Runtimes print from C (XNNPACK 'INFO: Created ...'): only stderr may carry that."""
    response = served.bench(model_path=str(models["conv"]), test_hook="stdout_noise",
                            **QUICK_ARGS)
    assert response["ok"], response
    assert served.request("ping")["ok"]  # the next line is a response, not noise
    text = served.stderr_text()
    assert "noise written to fd 1" in text and "noise printed by Python" in text
    assert "edgecost-agent: serving" in text


def test_test_hooks_need_the_environment_variable(agent, monkeypatch, models):
    monkeypatch.delenv("EDGECOST_AGENT_TEST_HOOKS", raising=False)
    with pytest.raises(agent.AgentFailure) as info:
        agent.parse_bench_args({"model_path": str(models["conv"]), "test_hook": "segv"})
    assert info.value.kind == "bad_request"


# =====================================================================================
# serve lifecycle, workdir, missing runtimes
# =====================================================================================


def test_relative_paths_shutdown_and_cleanup(start_agent, models, tmp_path):
    workdir = tmp_path / "work"
    (workdir / "models").mkdir(parents=True)
    shutil.copy(models["conv"], workdir / "models" / "conv.onnx")
    agent_process = start_agent(workdir=workdir)
    assert agent_process.hello["workdir"] == str(workdir)
    first = agent_process.bench(model_path="models/conv.onnx", **QUICK_ARGS)
    assert first["ok"], first
    assert first["result"]["model_path"] == str(workdir / "models" / "conv.onnx")
    second = agent_process.bench(model_path="models/conv.onnx", threads=2, **QUICK_ARGS)
    assert second["ok"] and second["result"]["threads"] == 2
    bye = agent_process.request("shutdown", {"cleanup": True})
    assert bye["result"] == {"shutdown": True, "cleaned": True}
    assert agent_process.proc.wait(timeout=30) == 0
    assert not (workdir / "models").exists() and workdir.exists()


def test_end_of_input_ends_the_agent(start_agent):
    agent_process = start_agent()
    assert agent_process.request("ping")["ok"]
    assert agent_process.close() == 0


def test_runtime_missing_and_runtime_crashing_on_import(start_agent, models, tflite_model,
                                                       tmp_path):
    fake = tmp_path / "fake_site"
    for package, body in (
            ("onnxruntime", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"),
            ("ai_edge_litert", "raise ImportError('hidden by the edgecost test')\n"),
            ("tflite_runtime", "raise ImportError('hidden by the edgecost test')\n")):
        (fake / package).mkdir(parents=True)
        (fake / package / "__init__.py").write_text(body)
    agent_process = start_agent(env={"PYTHONPATH": str(fake)})
    crashing = agent_process.bench(model_path=str(models["conv"]), **QUICK_ARGS)
    assert crashing["error"]["kind"] == "runtime_missing"
    assert "SIGSEGV" in crashing["error"]["message"]
    assert "pip install onnxruntime" in crashing["error"]["message"]
    hidden = agent_process.bench(model_path=str(tflite_model), **QUICK_ARGS)
    assert hidden["error"]["kind"] == "runtime_missing"
    assert "pip install ai-edge-litert" in hidden["error"]["message"]
    assert agent_process.request("ping")["ok"]
    info = agent_process.request("sysinfo", timeout=120)["result"]
    assert {"onnxruntime", "ai_edge_litert", "tflite_runtime"} <= set(info["missing_runtimes"])
    assert "SIGSEGV" in info["runtimes"]["onnxruntime"]["error"]
    assert "onnxruntime" not in info["available_runtimes"]
    assert "tflite" not in info["available_runtimes"]


# =====================================================================================
# one-shot CLI
# =====================================================================================


def test_cli_help_version_and_usage_errors(models):
    helped = run_cli("--help")
    assert helped.returncode == 0
    for word in ("sysinfo", "bench", "serve", "EDGECOST_AGENT_SYSROOT", "exit codes"):
        assert word in helped.stdout
    bench_help = run_cli("bench", "--help")
    assert "--input-shape" in bench_help.stdout and "--no-xnnpack" in bench_help.stdout
    assert run_cli("--version").stdout.startswith("edgecost-agent ")
    assert run_cli().returncode == 2
    assert run_cli("bench", str(models["conv"]), "--input-shape", "x=1xAx3").returncode == 2
    assert run_cli("bench").returncode == 2


def test_cli_bench_on_a_fake_board(models, tmp_path):
    root = tmp_path / "pi"
    fake_raspberry_pi4(root)
    proc = run_cli("bench", models["conv"], "--num-runs", "5", "--min-secs", "0",
                   "--warmup-min-secs", "0", "--ort-level", "basic",
                   env={"EDGECOST_AGENT_SYSROOT": str(root)})
    assert proc.returncode == 0, proc.stderr
    document = cli_json(proc)
    assert document["ok"] is True
    result = document["result"]
    assert result["environment"]["governor"] == "ondemand"
    assert result["environment"]["cpu_freq_mhz_start"] == [600.0] * 4
    assert result["environment"]["max_temp_c_end"] == 48.312
    assert any("'ondemand'" in w for w in result["warnings"])
    assert result["ort_optimization_level"] == "basic" and result["stats"]["n"] == 5


def test_cli_bench_failures_exit_codes(models, tmp_path):
    missing = run_cli("bench", tmp_path / "nope.onnx")
    assert missing.returncode == 1
    assert cli_json(missing)["error"]["kind"] == "model_not_found"
    dynamic = run_cli("bench", models["conv_dynamic"])
    assert dynamic.returncode == 2 and cli_json(dynamic)["error"]["kind"] == "bad_request"
    fixed = run_cli("bench", models["conv_dynamic"], "--input-shape", "x=3x3x16x16",
                    "--num-runs", "3", "--min-secs", "0", "--no-isolate", "--return-samples")
    assert fixed.returncode == 0, fixed.stderr
    result = cli_json(fixed)["result"]
    assert result["isolated"] is False and len(result["samples_ms"]) == result["stats"]["n"]

