"""The agent file we push to a Pi or a Jetson, run as aarch64 under qemu-aarch64-static.

An arm64 Debian root (tests/support/armroot.py) with NumPy, ONNX Runtime and ai-edge-litert
wheels for aarch64.  Timings under emulation mean nothing: only correctness is checked.
The runtime probe there cannot exec ``sys.executable`` (no binfmt_misc: "Exec format error"),
so sysinfo falls back to forked imports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.armroot import run_arm64, write_python_wrapper

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "device_agents" / "edgecost_agent.py"

pytestmark = [pytest.mark.arm, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

QUICK = {"warmup_runs": 1, "warmup_min_secs": 0.0, "num_runs": 3, "min_secs": 0.0, "max_secs": 10.0}


def test_sysinfo_on_arm64(arm64_root):
    proc = run_arm64([AGENT, "sysinfo"], arm64_root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)["result"]
    assert info["os"]["machine"] == "aarch64" and info["python"]["version"].startswith("3.")
    assert info["cpu"]["model_name"] == "Cortex-A72" and info["cpu"]["arm_cores"]
    runtimes = info["runtimes"]
    assert runtimes["numpy"]["available"] and runtimes["onnxruntime"]["available"]
    assert runtimes["ai_edge_litert"]["available"], runtimes
    assert set(info["available_runtimes"]) >= {"onnxruntime", "tflite"}
    assert "torch" in info["missing_runtimes"] and runtimes["torch"]["install_hint"] == "pip install torch"
    assert "probing without exec" in proc.stderr  # qemu-user cannot exec the guest python


def test_serve_benches_onnxruntime_and_litert_on_arm64(arm64_root, models, tflite_model, tmp_path):
    requests = [
        {"id": 1, "cmd": "ping"},
        {"id": 2, "cmd": "bench", "args": dict(QUICK, model_path=str(models["conv"]), profile_runs=2,
                                               ort_optimization_level="extended", heartbeat_secs=0.5)},
        {"id": 3, "cmd": "bench", "args": dict(QUICK, model_path=str(tflite_model))},
        {"id": 4, "cmd": "bench", "args": dict(QUICK, model_path=str(tflite_model), xnnpack=False)},
        {"id": 5, "cmd": "shutdown"},
    ]
    text = "".join(json.dumps(r) + "\n" for r in requests)
    proc = run_arm64([AGENT, "serve", "--workdir", tmp_path], arm64_root, input=text, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    hello = lines[0]
    assert hello["hello"] == "edgecost-agent" and hello["isolation"] is True
    responses = {r["id"]: r for r in lines[1:] if "ok" in r}
    assert all(r["ok"] for r in responses.values()), responses
    ort = responses[2]["result"]
    assert ort["stats"]["n"] == 3 and ort["isolated"] is True and ort["runtime"] == "onnxruntime"
    assert "FusedConv" in [n["op_type"] for n in ort["optimized_nodes"]]
    assert len(ort["node_profile"]) == len(ort["optimized_nodes"])
    litert = responses[3]["result"]
    assert litert["runtime_module"] == "ai_edge_litert" and litert["stats"]["n"] == 3
    assert litert["xnnpack"] is True and litert["xnnpack_applied"] is True
    assert responses[4]["result"]["xnnpack_applied"] is False
    assert all(r["id"] == 2 for r in lines[1:] if r.get("heartbeat"))  # only the bench that asked


@pytest.mark.ssh
def test_measure_over_ssh_on_an_arm64_host(arm64_root, ssh_fleet, ssh_home, models, tflite_model, tmp_path):
    """The whole path to a board: SSH, SFTP upload, the agent under the arm64 python, the store."""
    from edgecost import api
    from edgecost.health import check_device
    from edgecost.bench import BenchSettings
    from edgecost.store import Store

    wrapper = write_python_wrapper(arm64_root, tmp_path / "python3-arm64")
    host = ssh_fleet(0).add_host("pi", python=str(wrapper))
    dev = ssh_home.add(host, "pi", runtime="onnxruntime")
    report = check_device(dev)
    assert report["ok"], report
    assert report["machine"] == "aarch64" and report["cpu"] == "Cortex-A72"
    settings = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=10.0,
                             profile_runs=2)
    m = api.measure(models["conv"], "pi", settings=settings)
    assert m.stats.n == 3 and m.node_profile and m.provenance["device"]["machine"] == "aarch64"
    lite = api.measure(tflite_model, "pi", settings=settings)
    assert lite.target.runtime == "tflite" and lite.provenance["runtime_module"] == "ai_edge_litert"
    assert Store().device_facts("pi")["os"]["machine"] == "aarch64"
