"""Campaigns and the CLI over SSH against real sshd hosts: stored, resumed, failures recorded.

Covers: a campaign into the store; the link cut mid-campaign and resumed with nothing lost or
duplicated; the agent killed mid-model; `edgecost profile --devices a,b,local` in parallel into
one store with one failing device; `measure --json` over SSH; a device without onnxruntime
(`check`, `measure`, `setup --no-install`, and `setup --wheels`); bad input leaving the store
untouched.
"""

from __future__ import annotations

import dataclasses

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.ssh_devices import make_tiny_onnx, wheel_from_installed

from edgecost import api, cli
from edgecost.campaign import CampaignSettings, run_campaign
from edgecost.devices import Inventory
from edgecost.bench import BenchSettings
from edgecost.store import Store
from edgecost.transport.ssh import SshSession

pytestmark = [pytest.mark.ssh, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

FAST = BenchSettings(num_runs=3, min_secs=0, warmup_runs=1, warmup_min_secs=0.0, profile_runs=2, max_secs=2)
SETTINGS = CampaignSettings(seed=5, families=("conv", "linear", "pool", "nb201"), bench=FAST, kernel_share=0.7)


def _rows(store: Store, campaign_id: int | None = None):
    return store.measurements(status=None, campaign_id=campaign_id, with_profiles=False)


def _assert_unique_items(store: Store, campaign_id: int) -> list[str]:
    items = [m.campaign_item for m in _rows(store, campaign_id)]
    assert len(items) == len(set(items)), items
    return items


def test_campaign_over_ssh_into_the_store(ssh_hosts_two, ssh_home):
    dev = ssh_home.add(ssh_hosts_two[0], "pi")
    store = Store()
    gated = dataclasses.replace(SETTINGS, quiet_gate=True)  # the sentinel goes over SSH like any model
    r = api.profile("pi", budget_minutes=5, settings=gated, max_items=5, train=False, store=store)
    assert r.measured + r.failed == 5 and r.measured >= 4 and r.stopped_because == "item limit reached"
    assert r.gate["checks"] >= 6 and r.gate["reference_ms"] > 0  # a first check, then one before each item
    rows = store.measurements(dev.target())
    assert len(rows) == r.measured and all(m.measurement.node_profile for m in rows)
    assert {m.target.device for m in rows} == {"pi"}
    facts = store.device_facts("pi")
    assert facts["python"]["executable"] == ssh_hosts_two[0].python and facts["runtimes"]["onnxruntime"]["available"]
    _assert_unique_items(store, r.campaign_id)
    # The staged models were cleaned up when the session closed; the agent stays for next time.
    workdir = ssh_hosts_two[0].home / ".cache" / "edgecost-agent"
    assert not list((workdir / "models").iterdir()) and list(workdir.glob("edgecost_agent-*.py"))


def test_link_cut_mid_campaign_resumes_without_loss_or_duplicates(ssh_fleet, ssh_home, fast_detection):
    host = ssh_fleet(1).hosts[0]
    ssh_home.add(host, "wifi")
    store = Store()
    events: list = []
    lost = threading.Event()
    measured_two = threading.Event()

    def on_event(ev):
        events.append(ev)
        if ev.kind == "measured" and ev.done_ok >= 2:
            measured_two.set()
        if ev.kind == "warning" and "lost" in ev.message:
            lost.set()

    box: dict = {}

    def run():
        try:
            box["result"] = api.profile("wifi", budget_minutes=5, settings=SETTINGS, max_items=6, train=False,
                                        store=store, on_event=on_event)
        except Exception as exc:  # noqa: BLE001 - inspected below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert measured_two.wait(120), events
        host.link_down()
        before = {(m.id, m.campaign_item, m.median_ms) for m in _rows(Store())}
        assert lost.wait(60), [e.message for e in events]
        time.sleep(1.0)
    finally:
        if host.link_is_down:
            host.link_up()
    thread.join(180)
    assert not thread.is_alive() and "error" not in box, box
    r = box["result"]
    after = {(m.id, m.campaign_item, m.median_ms) for m in _rows(store)}
    assert before <= after  # everything stored before the cut is still there, unchanged
    items = _assert_unique_items(store, r.campaign_id)
    # The resumed run also times the first models again over the new link (revisits): count them apart.
    new_items = [i for i in items if "#r" not in i]
    assert len(new_items) == 6 and r.measured + r.failed == 6
    assert len(items) - len(new_items) == r.revisited + sum(
        m.status != "ok" for m in store.measurements(status=None, campaign_id=r.campaign_id) if "#r" in m.campaign_item)
    assert any("reconnecting" in e.message for e in events if e.kind == "warning")


class KillAgentOnSecondBench(SshSession):
    """Kills the remote agent (by PID, over a second SSH connection) during the second bench."""

    benches = 0
    killed_pid = None

    def bench(self, device_model_path, **args):
        type(self).benches += 1
        if type(self).benches == 2:
            args.update(num_runs=10**9, min_secs=60.0, max_secs=60.0)
            pid = self.pid
            host = self.fleet_host

            def kill():
                time.sleep(1.0)
                with host.connect() as second:
                    _, out, _ = second.exec_command(f"kill -KILL {pid}", timeout=10)
                    out.channel.recv_exit_status()
                type(self).killed_pid = pid

            threading.Thread(target=kill, daemon=True).start()
        return super().bench(device_model_path, **args)


def test_agent_killed_mid_model_is_recorded_failed_and_the_campaign_goes_on(ssh_hosts_two, ssh_home):
    host = ssh_hosts_two[1]
    dev = ssh_home.add(host, "jetson")
    store = Store()
    session = KillAgentOnSecondBench(dev)
    session.fleet_host = host
    try:
        r = run_campaign(session, dev.target(), store, budget_s=300, settings=SETTINGS, max_items=4)
    finally:
        session.close(cleanup=True)
    assert KillAgentOnSecondBench.killed_pid is not None
    assert (r.measured, r.failed) == (3, 1) and session.starts == 2
    [failed] = store.measurements(dev.target(), status="failed")
    assert failed.error_kind == "agent_died" and "exited" in failed.error_message
    _assert_unique_items(store, r.campaign_id)


def test_parallel_profiles_over_ssh_and_local_into_one_store(ssh_hosts_two, ssh_home, tmp_path):
    a, b = ssh_hosts_two
    ssh_home.add(a, "a")
    ssh_home.add(b, "b")
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    ssh_home.add(b, "badkey", key=str(wrong))
    proc = subprocess.run(
        [sys.executable, "-m", "edgecost", "profile", "--devices", "a,b,local,badkey", "--families", "conv,linear,pool",
         "--strategy", "random", "--max-models", "2", "--budget-minutes", "5", "--no-train", "--json"],
        env=ssh_home.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    results = {r["device"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(results) == {"a", "b", "local", "badkey"}
    assert "refused" in results["badkey"]["error"] and results["badkey"]["error_kind"] == "AuthError"
    for name in ("a", "b", "local"):
        assert "error" not in results[name], results[name]
        assert results[name]["measured"] + results[name]["failed"] == 2
    err_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "1 of 4 campaigns failed" in err_lines[0] and "badkey" in err_lines[0]
    store = Store()
    per_device = {}
    for m in _rows(store):
        per_device[m.target.device] = per_device.get(m.target.device, 0) + 1
    assert per_device == {"a": 2, "b": 2, "local": 2}
    for c in store.campaigns():
        _assert_unique_items(store, c["id"])


def test_measure_over_ssh_json_and_bad_input_leaves_the_store_alone(ssh_hosts_two, ssh_home, tmp_path, capsys):
    ssh_home.add(ssh_hosts_two[0], "board")
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    quick = ["--num-runs", "3", "--min-secs", "0", "--warmup-runs", "1"]
    assert cli.main(["measure", str(model), "--device", "board", "--json", *quick]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "board" and out["n"] == 3 and out["median_ms"] > 0
    assert out["provenance"]["device"]["hostname"] and out["model_hash"]
    store_before = ssh_home.store_dump()
    assert any("board" in line for line in store_before)
    with ssh_home.config.open("a") as fh:
        fh.write("Host void\n    HostName 192.0.2.1\n    ConnectTimeout 1\n")
    from edgecost.devices import Device

    Inventory().add(Device(name="void", host="void"))
    for argv, code, words in (
            (["measure", str(model), "--device", "nosuch"], 2, "unknown device 'nosuch'"),
            (["measure", str(model), "--device", "void"], 1, "cannot reach void"),
            (["measure", str(tmp_path / "missing.onnx"), "--device", "board"], 2, "not found"),
            (["devices", "check", "nosuch"], 2, "unknown device"),
            (["devices", "setup", "void"], 1, "cannot reach void"),
            (["devices", "trust", "void", "--yes"], 1, "cannot reach void")):
        assert cli.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and words in err, (argv, err)
    assert ssh_home.store_dump() == store_before


def test_device_without_onnxruntime(ssh_fleet, ssh_home, tmp_path, capsys):
    bare_host = ssh_fleet(0).add_host("bare", numpy_only=True)
    ssh_home.add(bare_host, "bare")
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    assert cli.main(["devices", "check", "bare", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "onnxruntime" in report["missing_runtimes"] and "numpy" in report["runtimes"]
    assert "lacks onnxruntime" in report["error"] and "edgecost devices setup bare" in report["error"]
    assert report["install_hints"]["onnxruntime"] == "pip install onnxruntime"
    assert captured.err.count("\n") == 1 and "lacks onnxruntime" in captured.err
    Store().put_device_facts("other", {"hostname": "other"})  # something stored already
    store_before = ssh_home.store_dump()
    assert cli.main(["measure", str(model), "--device", "bare", "--num-runs", "3", "--min-secs", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "onnxruntime" in err and "pip install onnxruntime" in err, err
    assert "devices setup" in err
    assert ssh_home.store_dump() == store_before
    inventory_before = (ssh_home.root / "devices.toml").read_text()
    assert cli.main(["devices", "setup", "bare", "--no-install"]) == 1
    captured = capsys.readouterr()
    assert "pip download --only-binary=:all: --platform manylinux_" in captured.out
    assert "onnxruntime" in captured.out and "--wheels" in captured.out
    assert captured.err.strip().startswith("error: bare still lacks onnxruntime")
    assert cli.main(["devices", "setup", "bare", "--dry-run"]) == 0
    assert "-m venv --system-site-packages" in capsys.readouterr().out
    assert (ssh_home.root / "devices.toml").read_text() == inventory_before


@pytest.mark.slow
def test_setup_installs_the_runtime_from_uploaded_wheels(ssh_fleet, ssh_home, tmp_path, capsys):
    bare_host = ssh_fleet(0).add_host("bare", numpy_only=True)
    ssh_home.add(bare_host, "bare")
    inventory_before = (ssh_home.root / "devices.toml").read_text()
    # Wheels that lack the runtime: pip fails, and setup says what it could not install and how to.
    incomplete = tmp_path / "incomplete"
    wheel_from_installed("flatbuffers", incomplete)
    assert cli.main(["devices", "setup", "bare", "--wheels", str(incomplete)]) == 1
    captured = capsys.readouterr()
    assert "pip install failed" in captured.out and "No matching distribution found for onnxruntime" in captured.out
    assert "pip download --only-binary=:all:" in captured.out
    assert captured.err.startswith("error: bare still lacks onnxruntime") and captured.err.count("\n") == 1
    assert (ssh_home.root / "devices.toml").read_text() == inventory_before
    wheels = tmp_path / "wheels"
    for dist in ("onnxruntime", "flatbuffers", "protobuf"):
        wheel_from_installed(dist, wheels)
    assert cli.main(["devices", "setup", "bare", "--wheels", str(wheels)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "installed onnxruntime" in out
    venv_python = Inventory().get("bare").python
    assert venv_python.endswith("/.cache/edgecost-agent/venv/bin/python")
    assert Path(venv_python).exists() and venv_python.startswith(str(bare_host.home))
    assert cli.main(["devices", "check", "bare"]) == 0
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    assert cli.main(["measure", str(model), "--device", "bare", "--num-runs", "3", "--min-secs", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == 3
    assert cli.main(["devices", "setup", "bare"]) == 0  # nothing left to do
    assert "is ready" in capsys.readouterr().out
