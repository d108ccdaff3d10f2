"""The SSH test hosts themselves: reachable, key-checked, breakable, and cleaned up."""

from __future__ import annotations

import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from support import sshfleet
from support.sshfleet import SshHost, netns_support, pid_alive

pytestmark = pytest.mark.ssh

NETNS_OK, NETNS_WHY = netns_support()
needs_netns = pytest.mark.skipif(not NETNS_OK, reason=f"network namespaces unavailable: {NETNS_WHY}")
# "auto" uses namespaces when they work; "loopback" forces the fallback so it is always tested.
MODES = [pytest.param(None, id="auto"), pytest.param(False, id="loopback")]


def run(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def wait_for(predicate, timeout_s: float = 10.0):
    """Poll ``predicate`` until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def open_cat(client: paramiko.SSHClient, timeout: float) -> paramiko.Channel:
    """A channel running `cat`, checked to echo one byte."""
    channel = client.get_transport().open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.exec_command("cat")
    channel.sendall(b"a")
    assert channel.recv(1) == b"a"
    return channel


def test_each_host_runs_commands_and_its_python(ssh_hosts_two: list[SshHost]):
    for host in ssh_hosts_two:
        with host.connect() as client:
            assert run(client, "echo hello") == (0, "hello\n", "")
            status, out, err = run(client, f"{shlex.quote(host.python)} -c 'import numpy; print(numpy.__name__)'")
            assert (status, out) == (0, "numpy\n"), err


def test_two_hosts_are_reachable_at_once_at_different_addresses(ssh_hosts_two: list[SshHost]):
    first, second = ssh_hosts_two
    assert (first.address, first.port) != (second.address, second.port)
    if NETNS_OK:
        assert first.netns and second.netns and first.netns != second.netns
        assert first.address != second.address and first.port == second.port == 22
    with first.connect() as a, second.connect() as b:
        # sshd tells the session which of its addresses the client reached.
        for host, client in ((first, a), (second, b)):
            status, out, _ = run(client, "echo $SSH_CONNECTION")
            assert status == 0
            assert out.split()[2:4] == [host.address, str(host.port)]


def test_each_host_has_its_own_home(ssh_hosts_two: list[SshHost]):
    homes = []
    for host in ssh_hosts_two:
        with host.connect() as client:
            status, out, _ = run(client, "echo $HOME; touch ~/marker")
            assert (status, out) == (0, f"{host.home}\n")
            homes.append(out)
        assert (host.home / "marker").exists()
    assert homes[0] != homes[1]


def test_unknown_or_wrong_host_key_is_refused(ssh_hosts_two: list[SshHost]):
    host, other = ssh_hosts_two
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(host.address, host.port, host.user, key_filename=str(host.client_key),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()
    wrong = paramiko.hostkeys.HostKeyEntry.from_line(f"{host.host_pattern} {other.host_public_key}")
    client = paramiko.SSHClient()
    client.get_host_keys().add(host.host_pattern, wrong.key.get_name(), wrong.key)
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(host.address, host.port, host.user, key_filename=str(host.client_key),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()


def test_only_the_fleet_key_logs_in(ssh_hosts_two: list[SshHost], tmp_path: Path):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_hosts_two[0].connect(key_filename=str(key)).close()


@pytest.mark.parametrize("netns", MODES)
def test_link_down_stalls_an_open_channel_and_link_up_restores(ssh_fleet, netns):
    fleet = ssh_fleet(1, netns=netns)
    host = fleet.hosts[0]
    client = host.connect(timeout=5)
    try:
        channel = open_cat(client, timeout=1.0)
        host.link_down()
        started = time.monotonic()
        with pytest.raises((TimeoutError, OSError, EOFError, paramiko.SSHException)):
            channel.sendall(b"b")
            channel.recv(1)  # nothing comes back: no RST, no EOF, just silence
        assert time.monotonic() - started < 5
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            host.connect(timeout=1).close()  # new connections fail too
        host.link_up()
        with host.connect(timeout=5) as again:
            assert run(again, "echo back") == (0, "back\n", "")
    finally:
        client.close()


@needs_netns
def test_sshd_notices_a_dead_link_through_client_alive(ssh_fleet):
    fleet = ssh_fleet(1, client_alive_interval_s=1, client_alive_count_max=1)
    host = fleet.hosts[0]
    client = host.connect()
    try:
        open_cat(client, timeout=5)
        assert host.session_pids()
        host.link_down()
        noticed = wait_for(lambda: "Timeout, client not responding" in host.log_text(), timeout_s=15)
        assert noticed, "sshd kept the session of a dead link open"
    finally:
        client.close()


def test_loopback_fallback_can_be_forced(ssh_fleet):
    fleet = ssh_fleet(2, netns=False)
    assert fleet.mode == "loopback" and fleet.fallback_reason
    ports = set()
    for host in fleet.hosts:
        assert host.netns is None and host.veth is None
        assert host.address == "127.0.0.1" and host.port != 22
        assert host.known_hosts_line().startswith(f"[127.0.0.1]:{host.port} ssh-ed25519 ")
        ports.add(host.port)
        with host.connect() as client:
            assert run(client, "echo $SSH_CONNECTION")[1].split()[2:4] == ["127.0.0.1", str(host.port)]
    assert len(ports) == 2


def test_netns_can_be_required(ssh_fleet):
    if NETNS_OK:
        assert ssh_fleet(1, netns=True).mode == "netns"
    else:
        with pytest.raises(sshfleet.SshFleetError, match="network namespaces were required"):
            ssh_fleet(1, netns=True)


def test_rotate_host_key_changes_the_fingerprint(ssh_fleet):
    host = ssh_fleet(1).hosts[0]
    old_line, old_fingerprint, old_pid = host.known_hosts_line(), host.host_key_fingerprint, host.pid
    new_fingerprint = host.rotate_host_key()
    assert new_fingerprint == host.host_key_fingerprint != old_fingerprint
    assert new_fingerprint.startswith("SHA256:") and host.pid != old_pid and not pid_alive(old_pid)
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=host.known_hosts_line(), capture_output=True, text=True)
    assert new_fingerprint in keygen.stdout  # same fingerprint as OpenSSH computes
    stale = paramiko.hostkeys.HostKeyEntry.from_line(old_line)
    client = paramiko.SSHClient()
    client.get_host_keys().add(host.host_pattern, stale.key.get_name(), stale.key)
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(host.address, host.port, host.user, key_filename=str(host.client_key),
                       look_for_keys=False, allow_agent=False, timeout=5)
    client.close()
    with host.connect() as client:
        assert run(client, "echo new")[1] == "new\n"


def test_kill_sessions_drops_connections_but_keeps_the_listener(ssh_fleet):
    host = ssh_fleet(1).hosts[0]
    client = host.connect()
    try:
        channel = open_cat(client, timeout=5)
        assert host.kill_sessions() >= 1
        assert channel.recv(1) == b""  # EOF: the session is gone
        assert pid_alive(host.pid) and host.session_pids() == []
        with host.connect() as again:
            assert run(again, "echo alive")[1] == "alive\n"
    finally:
        client.close()


def test_numpy_only_host_lacks_the_runtimes(ssh_fleet):
    fleet = ssh_fleet(1)
    plain = fleet.hosts[0]
    bare = fleet.add_host("bare", numpy_only=True)
    assert bare.python != plain.python
    probe = "import importlib.util as u; print([m for m in ('numpy', 'onnxruntime', 'ai_edge_litert', 'torch') if u.find_spec(m)])"
    with bare.connect() as client:
        status, out, err = run(client, f"{shlex.quote(bare.python)} -c {shlex.quote(probe)}")
        assert (status, out) == (0, "['numpy']\n"), err
        status, _, err = run(client, f"{shlex.quote(bare.python)} -c 'import onnxruntime'")
        assert status == 1 and "ModuleNotFoundError: No module named 'onnxruntime'" in err


@pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")
def test_ssh_config_block_works_with_the_openssh_client(ssh_hosts_two: list[SshHost], tmp_path: Path):
    host = ssh_hosts_two[0]
    known = tmp_path / "known_hosts"
    known.write_text(host.known_hosts_line() + "\n")
    config = tmp_path / "config"
    config.write_text(host.ssh_config_block("board", known_hosts_file=known) + "    BatchMode yes\n")
    block = host.ssh_config_block("board")
    assert block.splitlines()[:5] == [
        "Host board", f"    HostName {host.address}", f"    Port {host.port}",
        f"    User {host.user}", f"    IdentityFile {host.client_key}",
    ]
    proc = subprocess.run(["ssh", "-F", str(config), "board", "echo via-config"], capture_output=True, text=True, timeout=20)
    assert (proc.returncode, proc.stdout) == (0, "via-config\n"), proc.stderr


def _ip_lines(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True).stdout


@pytest.mark.parametrize("netns", MODES)
def test_close_leaves_no_processes_namespaces_or_veths(ssh_fleet, netns):
    fleet = ssh_fleet(2, netns=netns)
    clients = [host.connect() for host in fleet.hosts]
    orphans = []
    for client in clients:
        # one command that outlives its session, one still running at teardown
        status, out, _ = run(client, "nohup sleep 61 >/dev/null 2>&1 & echo $!")
        orphans.append(int(out))
        client.exec_command("sleep 60")

    def every_process():  # listener + session sshd + sleep + orphaned sleep, per host
        pids = {pid for host in fleet.hosts for pid in host.all_pids()}
        return pids if len(pids) >= 2 * 4 else None

    pids = wait_for(every_process)
    assert pids and set(orphans) <= pids
    namespaces = [h.netns for h in fleet.hosts if h.netns]
    veths = [h.veth for h in fleet.hosts if h.veth]
    fleet.close()
    for client in clients:
        client.close()
    assert [pid for pid in pids if pid_alive(pid)] == []
    if fleet.mode == "netns":
        assert len(namespaces) == len(veths) == 2
        listed = _ip_lines("netns", "list")
        links = _ip_lines("-o", "link", "show")
        assert not [ns for ns in namespaces if ns in listed]
        assert not [veth for veth in veths if f" {veth}@" in links or f" {veth}:" in links]
    assert not fleet.workdir.exists()
    fleet.close()  # a second close is harmless


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_leftovers_of_a_crashed_run_are_removed(ssh_fleet):  # ssh_fleet: skip without sshd
    dead = _dead_pid()
    folder = Path(sshfleet.tempfile.gettempdir()) / f"ecft-{dead}-crashed"
    folder.mkdir()
    made = [f"folder {folder}"]
    if NETNS_OK:
        ns, veth = f"ecft-{dead}-1", f"ecft{dead}h1"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        made += [f"netns {ns}"]
    # an sshd (and a session) of the crashed run, in loopback mode so it is no namespace's
    crashed = sshfleet.SshFleet(Path(sshfleet.tempfile.gettempdir()) / f"ecft-{dead}-fleet", netns=False)
    host = crashed.add_host()
    client = host.connect()
    client.exec_command("sleep 62")

    def session_running():  # listener + session sshd + sleep
        pids = host.all_pids()
        return pids if len(pids) >= 3 else None

    orphans = wait_for(session_running)
    assert orphans, "the crashed run's session did not start"
    made += [f"sshd pid {host.pid}", f"folder {crashed.workdir}"]
    try:
        removed = sshfleet.cleanup_stale()
        client.close()
        assert set(made) <= set(removed), removed
        assert not folder.exists() and not crashed.workdir.exists()
        assert [pid for pid in orphans if pid_alive(pid)] == []
        if NETNS_OK:
            assert ns not in _ip_lines("netns", "list")
            assert veth not in _ip_lines("-o", "link", "show")
    finally:
        crashed.close()
        if NETNS_OK:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("netns", MODES)
def test_connect_and_auth_time(ssh_fleet, netns, record_property):
    """Connect + key auth with paramiko, median of 10 (recorded; DESIGN.md has 70-120 ms)."""
    host = ssh_fleet(1, netns=netns).hosts[0]
    times_ms = []
    for _ in range(10):
        started = time.perf_counter()
        client = host.connect()
        times_ms.append((time.perf_counter() - started) * 1000)
        client.close()
    median_ms = statistics.median(times_ms)
    mode = "netns" if host.netns else "loopback"
    record_property(f"connect_auth_median_ms_{mode}", round(median_ms, 1))
    print(f"paramiko connect+auth ({mode}): median {median_ms:.0f} ms, min {min(times_ms):.0f}, max {max(times_ms):.0f}")
    assert median_ms < 2000


def test_two_hosts_start_within_a_second_each(ssh_fleet):
    started = time.monotonic()
    ssh_fleet(2)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * 1.0, f"starting two hosts took {elapsed:.1f} s"


def test_a_closed_fleet_refuses_connections_and_changes(ssh_fleet):
    fleet = ssh_fleet(1)
    host = fleet.hosts[0]
    fleet.close()
    # (not a bare TCP connect: with the namespace gone, 10.77.N.2 is routed to the default
    # gateway, and some sandboxes' gateways accept any TCP connection)
    with pytest.raises((OSError, EOFError, paramiko.SSHException)):
        host.connect(timeout=2).close()
    with pytest.raises(sshfleet.SshFleetError, match="closed"):
        host.link_down()


def test_require_fleet_turns_skips_into_failures(monkeypatch):
    """.ci/run sets EDGECOST_REQUIRE_FLEET=1: a missing sshd or qemu must fail CI, not skip."""
    from support.ssh_fixtures import skip_or_fail

    monkeypatch.delenv("EDGECOST_REQUIRE_FLEET", raising=False)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no sshd here")
    monkeypatch.setenv("EDGECOST_REQUIRE_FLEET", "1")
    with pytest.raises(pytest.fail.Exception, match="EDGECOST_REQUIRE_FLEET"):
        skip_or_fail("no sshd here")
