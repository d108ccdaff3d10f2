"""The SSH transport against real sshd hosts (tests/support/sshfleet.py): no mocks.

Hosts live in network namespaces (or on 127.0.0.1 ports); devices reach them through an ssh
config and a known_hosts file of the test's own (``ssh_home``).  No test asserts an absolute
time; waits have generous bounds.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from support.ssh_devices import make_tiny_onnx

from edgecost import cli
from edgecost.devices import Inventory
from edgecost.errors import AgentCrashedError, AgentError, AuthError, ConnectionLostError, HostKeyError, TransportError
from edgecost.transport import open_session
from edgecost.transport.ssh import SshSession, resolve_endpoint

pytestmark = pytest.mark.ssh

QUICK = dict(warmup_runs=0, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=2.0)


def _bench_in_thread(session, remote, **args):
    box: dict = {}

    def run():
        try:
            box["result"] = session.bench(remote, **args)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            box["error"] = exc
        box["t"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _wait(predicate, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_session_uploads_by_content_hash_and_runs_the_agent(ssh_hosts_two, ssh_home, tmp_path):
    host = ssh_hosts_two[0]
    dev = ssh_home.add(host, "board")
    model = make_tiny_onnx(tmp_path / "tiny.onnx")
    with open_session(dev) as session:
        assert isinstance(session, SshSession)
        hello = session.start()
        assert hello["heartbeat"] is True and session.workdir.endswith("/.cache/edgecost-agent")
        assert session.workdir.startswith(str(host.home))  # `~` expanded on the device, per user
        facts = session.sysinfo()
        assert facts["runtimes"]["onnxruntime"]["available"]
        sent, sent_bytes = session.upload.files_sent, session.upload.bytes_sent  # the agent, if it was new
        remote = session.stage_model(model)
        assert remote == session.stage_model(model)  # second time: not even a stat
        assert Path(remote).name.endswith(".onnx") and len(Path(remote).stem) == 64
        assert session.upload.files_sent == sent + 1
        assert session.upload.bytes_sent == sent_bytes + model.stat().st_size
        result = session.bench(remote, **dict(QUICK, min_secs=1.0))  # heartbeats flow (every 2 s)
        assert result["stats"]["n"] >= 3 and result["model_path"] == remote
        assert "heartbeat_secs" not in " ".join(result["warnings"])
        assert session.timings["session_setup_s"] > 0 and session.upload.mb_per_s > 0
    workdir = host.home / ".cache" / "edgecost-agent"
    assert not list(workdir.rglob("*.part-*"))
    # A new session finds the agent and the model already there: nothing is sent again.
    with open_session(dev) as session:
        session.stage_model(model)
        assert session.ping()
        assert session.upload.files_sent == 0 and session.upload.files_reused == 2
        session.close(cleanup=True)  # removes the models this session staged, keeps the agent
    assert not list((workdir / "models").iterdir())
    assert [p.name for p in workdir.glob("edgecost_agent-*.py")]


def test_ssh_config_facts_and_inventory_overrides(ssh_hosts_two, ssh_home, tmp_path, monkeypatch):
    host = ssh_hosts_two[0]
    ssh_home.add(host, "cfg")
    ep = resolve_endpoint("cfg", label="cfg")
    assert (ep.hostname, ep.port, ep.user) == (host.address, host.port, host.user)
    assert ep.key_files == (str(host.client_key),) and not ep.allow_agent  # IdentitiesOnly yes
    assert ep.known_hosts == ssh_home.known_hosts
    over = resolve_endpoint("someone@cfg:2222", label="cfg", user="pi", key=str(tmp_path / "k"))
    assert (over.user, over.port, over.key_files) == ("pi", 2222, (str(tmp_path / "k"),))
    plain = resolve_endpoint("nano@192.0.2.7", label="nano")
    assert (plain.hostname, plain.user, plain.port, plain.proxy_jump) == ("192.0.2.7", "nano", 22, ())
    monkeypatch.setenv("EDGECOST_KNOWN_HOSTS", "")
    monkeypatch.setenv("EDGECOST_SSH_CONFIG", "none")
    assert resolve_endpoint("cfg", label="cfg").hostname == "cfg"


def test_proxy_jump_goes_through_a_direct_tcpip_channel(ssh_hosts_two, ssh_home):
    jump = ssh_hosts_two[1]
    # The jump host's sshd opens the TCP connection to the target. A namespace reaches only
    # itself, so there the target is the jump host's own address; on loopback, the other host.
    target = jump if jump.netns is not None else ssh_hosts_two[0]
    ssh_home.add(jump, "jumpbox")
    behind = ssh_home.add(target, "behind", extra_config="    ProxyJump jumpbox\n")
    with open_session(behind) as session:
        assert session.ping()
        assert session.endpoint.proxy_jump == ("jumpbox",)
    # The inventory's proxy_jump (`devices add --proxy-jump`) does the same without the ssh config.
    inventoried = ssh_home.add(target, "behind2", extra={"proxy_jump": "jumpbox"})
    with open_session(inventoried) as session:
        assert session.ping() and session.endpoint.proxy_jump == ("jumpbox",)
    if jump.netns is not None:  # the login came from inside the jump host's namespace
        assert f"Connection from {jump.address}" in jump.log_text(200)


def test_unknown_host_key_is_refused_until_trusted(ssh_hosts_two, ssh_home, capsys, monkeypatch):
    host = ssh_hosts_two[0]
    dev = ssh_home.add(host, "newboard", trusted=False)
    with pytest.raises(HostKeyError) as info:
        open_session(dev).start()
    message = str(info.value)
    assert "\n" not in message and "unknown host key" in message
    assert host.host_key_fingerprint in message and "ssh-ed25519" in message
    assert "edgecost devices trust newboard" in message
    assert ssh_home.known_hosts.read_text() == ""
    # Without --yes and without a terminal, nothing is trusted.
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["devices", "trust", "newboard"]) == 2
    assert ssh_home.known_hosts.read_text() == ""
    assert cli.main(["devices", "trust", "newboard", "--yes"]) == 0
    out = capsys.readouterr().out
    assert host.host_key_fingerprint in out
    assert ssh_home.known_hosts.read_text().split()[0] == host.host_pattern
    with open_session(dev) as session:
        assert session.ping()
    assert cli.main(["devices", "trust", "newboard", "--yes"]) == 0
    assert "already trusted" in capsys.readouterr().out
    assert len(ssh_home.known_hosts.read_text().splitlines()) == 1


def test_hashed_and_revoked_known_hosts_lines(ssh_hosts_two, ssh_home):
    host = ssh_hosts_two[0]
    dev = ssh_home.add(host, "hashed")
    subprocess.run(["ssh-keygen", "-H", "-f", str(ssh_home.known_hosts)], check=True, capture_output=True)
    assert ssh_home.known_hosts.read_text().startswith("|1|")  # HashKnownHosts yes, as Debian writes it
    with open_session(dev) as session:
        assert session.ping()
    ssh_home.known_hosts.write_text(f"@revoked * {host.host_public_key}\n" + ssh_home.known_hosts.read_text())
    with pytest.raises(HostKeyError, match="@revoked"):
        open_session(dev).start()


def test_changed_host_key_is_refused(ssh_fleet, ssh_home, capsys):
    host = ssh_fleet(1).hosts[0]
    dev = ssh_home.add(host, "reimaged")
    old = host.host_key_fingerprint
    with open_session(dev) as session:
        assert session.ping()
    new = host.rotate_host_key()
    known_before = ssh_home.known_hosts.read_text()
    with pytest.raises(HostKeyError) as info:
        open_session(dev).start()
    message = str(info.value)
    assert "\n" not in message and "CHANGED" in message and "man-in-the-middle" in message
    assert old in message and new in message
    assert f"ssh-keygen -f {ssh_home.known_hosts} -R '{host.host_pattern}'" in message
    assert cli.main(["devices", "trust", "reimaged", "--yes"]) == 1  # never replaced silently
    assert "CHANGED" in capsys.readouterr().err
    assert ssh_home.known_hosts.read_text() == known_before


def test_wrong_or_missing_client_key_is_refused(ssh_hosts_two, ssh_home, tmp_path):
    host = ssh_hosts_two[0]
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    dev = ssh_home.add(host, "keyed", key=str(wrong))
    with pytest.raises(AuthError) as info:
        open_session(dev).start()
    message = str(info.value)
    assert "\n" not in message and "refused" in message
    assert f"{host.user}@{host.address}:{host.port}" in message and str(wrong) in message
    assert "ssh-copy-id" in message and "--key" in message
    missing = ssh_home.add(host, "nokey", key=str(tmp_path / "id_missing"))
    with pytest.raises(AuthError, match="does not exist"):
        open_session(missing).start()


def test_unreachable_host_is_a_transport_error(ssh_home):
    ssh_home.config.write_text("Host void\n    HostName 192.0.2.1\n    ConnectTimeout 1\n"
                               "Host closed\n    HostName 127.0.0.1\n    Port 1\n")
    inv = Inventory()
    from edgecost.devices import Device

    for name in ("void", "closed"):
        inv.add(Device(name=name, host=name))
        t0 = time.monotonic()
        with pytest.raises(TransportError) as info:
            open_session(inv.get(name)).start()
        assert time.monotonic() - t0 < 30
        message = str(info.value)
        assert "\n" not in message and f"cannot reach {name}" in message and "try `ssh" in message
        assert not isinstance(info.value, (HostKeyError, AuthError))


def test_missing_python_on_the_device(ssh_hosts_two, ssh_home):
    dev = ssh_home.add(ssh_hosts_two[0], "nopython", python="/opt/no/such/python3")
    with pytest.raises(AgentError) as info:
        open_session(dev).start()
    assert info.value.kind == "python_missing" and "\n" not in str(info.value)
    assert "/opt/no/such/python3" in str(info.value) and "--python" in str(info.value)


def test_killed_agent_is_a_crash_not_a_lost_link(ssh_hosts_two, ssh_home, tmp_path):
    host = ssh_hosts_two[1]
    dev = ssh_home.add(host, "killme")
    remote_model = None
    with open_session(dev) as session:
        remote_model = session.stage_model(make_tiny_onnx(tmp_path / "m.onnx"))
        session.bench(remote_model, **QUICK)  # the runtime is imported: the next bench starts fast
        pid = session.pid
        thread, box = _bench_in_thread(session, remote_model, **dict(QUICK, num_runs=10**9, min_secs=60, max_secs=60))
        time.sleep(1.0)
        with host.connect() as second:  # like `pkill` over a second connection, by PID
            _, out, _ = second.exec_command(f"kill -KILL {pid}", timeout=10)
            assert out.channel.recv_exit_status() == 0
        thread.join(30)
        assert isinstance(box.get("error"), AgentCrashedError), box
        assert not isinstance(box["error"], ConnectionLostError)
        assert box["error"].kind == "agent_died" and "\n" not in str(box["error"])
        assert session.ping() and session.starts == 2 and session.pid != pid  # a new agent, same link


@pytest.mark.parametrize("netns", [None, False], ids=["auto", "loopback"])
def test_dropped_link_mid_bench_is_connection_lost(ssh_fleet, ssh_home, tmp_path, fast_detection, netns):
    """netns: the board's interface goes down (packets dropped); loopback: sshd and the agent freeze."""
    host = ssh_fleet(1, netns=netns).hosts[0]
    dev = ssh_home.add(host, "flaky")
    session = open_session(dev)
    try:
        remote = session.stage_model(make_tiny_onnx(tmp_path / "m.onnx"))
        session.bench(remote, **QUICK)
        thread, box = _bench_in_thread(session, remote, **dict(QUICK, num_runs=10**9, min_secs=60, max_secs=60))
        time.sleep(1.0)  # heartbeats are flowing
        t_cut = time.monotonic()
        host.link_down()
        thread.join(60)
        assert isinstance(box.get("error"), ConnectionLostError), box
        assert box["t"] - t_cut < 30  # long before the 60 s bench would have ended
        assert "dropped" in str(box["error"]) and "\n" not in str(box["error"])
        host.link_up()
        _wait(lambda: not host.link_is_down)
        assert session.ping()  # the same session reconnects on the next request
        assert session.starts == 2
    finally:
        if host.link_is_down:
            host.link_up()
        session.close()


def test_devices_check_over_ssh(ssh_hosts_two, ssh_home, capsys):
    ssh_home.add(ssh_hosts_two[0], "checked")
    assert cli.main(["devices", "check", "checked", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["kind"] == "ssh" and report["session_setup_ms"] > 0
    assert report["ssh"]["address"] == f"{ssh_hosts_two[0].user}@{ssh_hosts_two[0].address}:{ssh_hosts_two[0].port}"
    assert "onnxruntime" in report["runtimes"] and report["python"].startswith("3.")
    assert isinstance(report["power_sensors"], list) and "governor" in report
    assert cli.main(["devices", "check", "checked"]) == 0
    text = capsys.readouterr().out
    assert "over SSH to" in text and "power sensors" in text and "ok" in text


def test_an_absolute_work_dir_with_a_space(ssh_hosts_two, ssh_home, tmp_path):
    dev = ssh_home.add(ssh_hosts_two[0], "spaced", workdir=str(tmp_path / "work dir"))
    with open_session(dev) as session:
        assert session.ping()
        assert session.workdir == str(tmp_path / "work dir")
        assert session.stage_model(make_tiny_onnx(tmp_path / "m.onnx")).startswith(str(tmp_path / "work dir/models/"))
