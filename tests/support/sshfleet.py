"""Real sshd test hosts: each one a Debian ``sshd`` in its own Linux network namespace.

A :class:`SshFleet` starts OpenSSH servers that edgecost's SSH transport can talk to exactly as
it talks to a Raspberry Pi: own address, own host key, key-only login, known-hosts checking.

Where the hosts live
    *netns mode* (root, ``ip`` available): host ``k`` of process ``PID`` is the network namespace
    ``ecft-PID-k``, joined to this machine by a veth pair: ``ecftPIDhk`` here with
    ``10.77.N.1/24``, ``eth0`` inside with ``10.77.N.2/24`` (``lo`` up too). sshd listens on
    ``10.77.N.2:22``. ``N`` is the lowest third octet no interface or route here uses yet,
    picked under a file lock so concurrent test runs never share a subnet.
    *loopback mode* (no root, no ``ip``, namespaces refused, or ``netns=False``): every sshd
    listens on ``127.0.0.1`` on a free port. :attr:`SshFleet.fallback_reason` says why.

Remote Python
    The hosts share this machine's file system, so a host's "remote" Python is a path here
    (``SshHost.python``): by default ``$EDGECOST_TEST_HOST_PYTHON`` or the Python running the
    tests. ``add_host(numpy_only=True)`` gives a host whose Python has NumPy and nothing else
    (no onnxruntime, no ai_edge_litert, no torch): a venv made with ``--without-pip`` and no
    system site-packages, whose site-packages holds only symlinks to the source Python's numpy.
    A venv rather than a wrapper that blocks imports, so ``import onnxruntime`` fails exactly
    as on a board without it (``ModuleNotFoundError``) and ``importlib.util.find_spec`` agrees.
    Each host's sessions get their own empty ``$HOME`` (``SshHost.home``): what the agent
    writes under ``~`` stays per host, and this machine's ``~/.bashrc`` is not run.

Links and failures
    ``link_down()`` in netns mode sets the *inside* end (``eth0``) down. The host side keeps its
    address and route, so packets to the host are silently dropped: an open channel stalls (no
    RST, no error) until the client's own timeout or keepalive notices, and a new connection
    hangs in SYN-SENT (the kernel may give up earlier with EHOSTUNREACH once ARP fails, ~3 s),
    as when a board's Wi-Fi drops. (Setting the host-side end down instead removes the route, so
    packets would leak to the default gateway.) In loopback mode it sends SIGSTOP to sshd and
    all its descendants: the kernel still accepts TCP, but nothing answers, so both open and new
    connections stall until the client times out. ``link_up()`` undoes either.

Cleanup
    ``close()`` (and the fixtures, even when a test failed) kills every process of a host by
    PID (SIGTERM, then SIGKILL), then deletes its namespace and veth. The first fleet a process
    creates also removes what crashed runs left: namespaces, veths, sshd processes and work
    folders named after a PID that is no longer alive.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PREFIX = "ecft"
NET_PREFIX = os.environ.get("EDGECOST_SSHFLEET_NET", "10.77")  # /16 whose /24s the hosts use
_OWNER_PID = os.getpid()
_host_counter = itertools.count(1)
_stale_cleaned = False
_netns_probe: tuple[bool, str] | None = None
_OPEN_FLEETS: weakref.WeakSet[SshFleet] = weakref.WeakSet()


@atexit.register
def _close_forgotten_fleets() -> None:
    """Safety net for scripts that forget close(): no sshd outlives the process."""
    for fleet in list(_OPEN_FLEETS):
        with contextlib.suppress(Exception):
            fleet.close()


class SshFleetError(RuntimeError):
    """A test host could not be started, changed or stopped; the message says which and why."""


def sshd_path() -> str | None:
    """The OpenSSH server binary, or None when openssh-server is not installed."""
    return shutil.which("sshd", path=os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin", os.environ.get("PATH", "")]))


def missing_tools() -> list[str]:
    """Tools a fleet cannot start without (``ip`` is optional: without it, loopback mode)."""
    missing = []
    if sshd_path() is None:
        missing.append("sshd (apt-get install openssh-server)")
    if shutil.which("ssh-keygen") is None:
        missing.append("ssh-keygen (apt-get install openssh-client)")
    return missing


def _ip() -> str | None:
    return shutil.which("ip", path=os.pathsep.join(["/usr/sbin", "/sbin", "/usr/bin", "/bin", os.environ.get("PATH", "")]))


def _run(args: list[str], *, check: bool = True, timeout: float = 10.0, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise SshFleetError(f"{' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def netns_support() -> tuple[bool, str]:
    """Whether network namespaces with veth pairs can be made here, and if not, why.

    Probed once per process by really making (and deleting) a namespace with a veth pair.
    """
    global _netns_probe
    if _netns_probe is not None:
        return _netns_probe
    ip = _ip()
    if os.geteuid() != 0:
        _netns_probe = (False, "not running as root (ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    elif ip is None:
        _netns_probe = (False, "the ip command is missing (apt-get install iproute2)")
    else:
        ns, veth = f"{PREFIX}-{_OWNER_PID}-probe", f"{PREFIX}{_OWNER_PID}p"
        try:
            _run([ip, "netns", "add", ns])
            try:
                _run([ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            finally:
                _run([ip, "link", "del", veth], check=False)
                _run([ip, "netns", "del", ns], check=False)
            _netns_probe = (True, "")
        except (SshFleetError, OSError, subprocess.TimeoutExpired) as exc:
            _netns_probe = (False, f"cannot create a network namespace with a veth pair: {exc}")
    return _netns_probe


# --- processes ---------------------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z...), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split(" ", 1)[0]


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split(" ")[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, deepest first."""
    children = _ppid_map()
    order: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        order.append(child)
        stack.extend(children.get(child, []))
    return [p for p in reversed(order) if pid_alive(p)]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout_s: float, popen: subprocess.Popen | None = None) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        if popen is not None:
            popen.poll()  # reaps our own child, so it does not linger as a zombie
        alive = [p for p in pids if pid_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.01)


def terminate(pids: list[int], popen: subprocess.Popen | None = None, grace_s: float = 2.0) -> list[int]:
    """SIGCONT + SIGTERM, then SIGKILL whatever is left after ``grace_s``; returns survivors."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
        _signal(pid, signal.SIGCONT)  # a stopped process only acts on SIGTERM once continued
    alive = _wait_gone(pids, grace_s, popen)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    return _wait_gone(alive, grace_s, popen)


def _owner_alive(pid: int) -> bool:
    if pid == _OWNER_PID:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid_alive(pid)


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serializes subnet picking and stale cleanup between concurrent test processes."""
    path = Path(tempfile.gettempdir()) / f"{PREFIX}-sshfleet-{os.geteuid()}.lock"  # netns users are all root
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cleanup_stale() -> list[str]:
    """Remove namespaces, veths, sshd processes and work folders of test runs that died.

    Only names carrying the PID of a process that no longer exists are touched, so concurrent
    runs are safe. Returns what was removed.
    """
    removed: list[str] = []
    ip = _ip()
    if ip is not None and os.geteuid() == 0:
        listing = _run([ip, "netns", "list"], check=False).stdout
        for line in listing.splitlines():
            name = line.split()[0] if line.split() else ""
            m = re.fullmatch(rf"{PREFIX}-(\d+)-\w+", name)
            if m and not _owner_alive(int(m.group(1))):
                pids = [int(p) for p in _run([ip, "netns", "pids", name], check=False).stdout.split()]
                terminate(pids, grace_s=1.0)
                _run([ip, "netns", "del", name], check=False)
                removed.append(f"netns {name}")
        links = _run([ip, "-o", "link", "show"], check=False).stdout
        for m in re.finditer(rf"^\d+: ({PREFIX}(\d+)[hp][0-9a-z]*)[@:]", links, re.M):
            if not _owner_alive(int(m.group(2))):
                _run([ip, "link", "del", m.group(1)], check=False)
                removed.append(f"veth {m.group(1)}")
    tmp = re.escape(tempfile.gettempdir())
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv)
        m = re.search(rf"sshd .*-f {tmp}/{PREFIX}-(\d+)-", text)
        if m and not _owner_alive(int(m.group(1))):
            listener = int(entry.name)
            terminate(descendants(listener), grace_s=1.0)
            terminate([listener], grace_s=1.0)
            removed.append(f"sshd pid {listener}")
    for entry in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*"):
        m = re.fullmatch(rf"{PREFIX}-(\d+)-.*", entry.name)
        if m and entry.is_dir() and not _owner_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"folder {entry}")
    return removed


# --- keys --------------------------------------------------------------------------------


def _keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair at ``path`` (+ ``.pub``); returns 'ssh-ed25519 AAAA...'."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    kind, blob = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint ('SHA256:...') of an 'ssh-ed25519 AAAA...' key."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --- hosts -------------------------------------------------------------------------------


@dataclass(eq=False)
class SshHost:
    """One running test host. Fields change only through its own methods (rotate, restart)."""

    name: str
    address: str
    port: int
    user: str
    client_key: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    netns: str | None
    pid: int  # the listening sshd
    log_path: Path
    python: str  # the interpreter the agent should use on this host
    workdir: Path
    home: Path | None = None  # $HOME of its sessions (None: the user's own home)
    veth: str | None = None  # host-side end of the veth pair (netns mode)
    link_is_down: bool = False
    _fleet: SshFleet | None = field(default=None, repr=False)
    _popen: subprocess.Popen | None = field(default=None, repr=False)
    _config_path: Path | None = field(default=None, repr=False)
    _key_generation: int = field(default=1, repr=False)

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint(self.host_public_key)

    @property
    def host_pattern(self) -> str:
        """The name known_hosts uses: 'addr' on port 22, '[addr]:port' otherwise."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def known_hosts_line(self) -> str:
        return f"{self.host_pattern} {self.host_public_key}"

    def ssh_config_block(self, alias: str, known_hosts_file: str | os.PathLike | None = None) -> str:
        """A ``Host alias`` block for ``~/.ssh/config``; with ``known_hosts_file``, also a
        ``UserKnownHostsFile`` line and ``StrictHostKeyChecking yes``."""
        lines = [
            f"Host {alias}",
            f"    HostName {self.address}",
            f"    Port {self.port}",
            f"    User {self.user}",
            f"    IdentityFile {self.client_key}",
            "    IdentitiesOnly yes",
        ]
        if known_hosts_file is not None:
            lines += [f"    UserKnownHostsFile {known_hosts_file}", "    StrictHostKeyChecking yes"]
        return "\n".join(lines) + "\n"

    def log_text(self, tail_lines: int | None = 200) -> str:
        """The sshd log (LogLevel VERBOSE), for failure messages."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        if tail_lines is not None:
            lines = lines[-tail_lines:]
        return "\n".join(lines)

    def connect(self, timeout: float = 5.0, **kwargs):
        """A connected paramiko ``SSHClient``: RejectPolicy, this host's key as the only known
        host key, key authentication with the fleet's client key, ``timeout`` for the TCP
        connect, the banner and the authentication. Extra keyword arguments go to connect()."""
        import paramiko  # noqa: PLC0415 - paramiko is only needed by tests that connect

        client = paramiko.SSHClient()
        entry = paramiko.hostkeys.HostKeyEntry.from_line(self.known_hosts_line())
        client.get_host_keys().add(self.host_pattern, entry.key.get_name(), entry.key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        options = dict(
            hostname=self.address, port=self.port, username=self.user,
            key_filename=str(self.client_key), look_for_keys=False, allow_agent=False,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
        )
        options.update(kwargs)
        try:
            client.connect(**options)
        except BaseException:
            client.close()
            raise
        return client

    def session_pids(self) -> list[int]:
        """Processes serving established connections (sshd children and their commands)."""
        return descendants(self.pid)

    def all_pids(self) -> list[int]:
        """Everything this host runs: the listener, its descendants, and in netns mode every
        process inside the namespace."""
        pids = set(self.session_pids())
        if pid_alive(self.pid):
            pids.add(self.pid)
        if self.netns is not None:
            out = _run([_ip() or "ip", "netns", "pids", self.netns], check=False).stdout
            pids.update(int(p) for p in out.split() if pid_alive(int(p)))
        return sorted(pids)

    def link_down(self) -> None:
        """Cut the host off: packets are dropped silently (see the module docstring)."""
        self._require_fleet()
        if self.netns is not None:
            _run([_ip(), "-n", self.netns, "link", "set", "eth0", "down"])
        else:  # the listener first (no new sessions), then until no new descendant appears
            stopped: set[int] = set()
            while True:
                fresh = [p for p in [self.pid, *self.session_pids()] if p not in stopped]
                if not fresh:
                    break
                for pid in fresh:
                    _signal(pid, signal.SIGSTOP)
                stopped.update(fresh)
        self.link_is_down = True

    def link_up(self) -> None:
        self._require_fleet()
        if self.netns is not None:
            _run([_ip(), "-n", self.netns, "link", "set", "eth0", "up"])
            self._wait_reachable(self._fleet.start_timeout_s)
        else:
            for pid in [self.pid, *self.session_pids()]:
                _signal(pid, signal.SIGCONT)
        self.link_is_down = False

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """Kill every established session (sshd's children and what they run), keeping the
        listener; returns how many processes were signalled."""
        pids = self.session_pids()
        for pid in pids:
            _signal(pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            _wait_gone(pids, 2.0, self._popen)
        return len(pids)

    def rotate_host_key(self) -> str:
        """Restart sshd with a freshly generated host key (sessions are killed too, as when a
        board is re-imaged); returns the new fingerprint. Update known_hosts yourself."""
        fleet = self._require_fleet()
        fleet._stop_host_processes(self)
        self._key_generation += 1
        key_path = self.workdir / f"ssh_host_ed25519_key.{self._key_generation}"
        self.host_public_key = _keygen(key_path, f"{self.name}-hostkey-{self._key_generation}")
        fleet._write_config(self, key_path)
        fleet._start_sshd(self)
        return self.host_key_fingerprint

    def _require_fleet(self) -> SshFleet:
        if self._fleet is None or self._fleet.closed:
            raise SshFleetError(f"host {self.name} belongs to a fleet that is closed")
        return self._fleet

    def _wait_reachable(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                raise SshFleetError(
                    f"sshd for host {self.name} exited with {self._popen.returncode} while starting:\n{self.log_text(40)}"
                )
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5) as sock:
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError as exc:
                last_error = exc
            time.sleep(0.01)
        raise SshFleetError(
            f"sshd for host {self.name} did not answer on {self.address}:{self.port} within {timeout_s:.0f} s "
            f"(last error: {last_error}):\n{self.log_text(40)}"
        )


# --- the fleet ---------------------------------------------------------------------------


class SshFleet:
    """A set of sshd test hosts sharing one client key. Use as a context manager or close().

    ``netns``: True requires namespaces (error if impossible), False forces loopback mode,
    None (default) uses namespaces when they work. ``python``: the hosts' default interpreter.
    ``user``: the login name (default: the user running the tests; sshd runs as that user too,
    so non-root runs get loopback hosts that accept only that user). ``own_home`` (default)
    gives each host's sessions their own empty ``$HOME`` (``SshHost.home``, via sshd's
    ``SetEnv``), so hosts do not share dot-files and the login shell reads no ``~/.bashrc``
    of this machine (a pyenv init there costs ~0.2 s per command and leaves a stale lock when a
    test kills a session mid-way); commands get sshd's default ``PATH``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        netns: bool | None = None,
        python: str | None = None,
        user: str | None = None,
        login_grace_time_s: int = 10,
        client_alive_interval_s: int = 2,
        client_alive_count_max: int = 3,
        start_timeout_s: float = 10.0,
        own_home: bool = True,
    ):
        problems = missing_tools()
        if problems:
            raise SshFleetError("cannot start test hosts, missing: " + ", ".join(problems))
        global _stale_cleaned
        with _global_lock():
            if not _stale_cleaned:
                cleanup_stale()
                _stale_cleaned = True
        if netns is False:
            self.mode, self.fallback_reason = "loopback", "netns=False was asked for"
        else:
            ok, reason = netns_support()
            if not ok and netns is True:
                raise SshFleetError(f"network namespaces were required but {reason}")
            self.mode, self.fallback_reason = ("netns", None) if ok else ("loopback", reason)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{_OWNER_PID}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python or os.environ.get("EDGECOST_TEST_HOST_PYTHON") or sys.executable
        self.user = user or pwd.getpwuid(os.geteuid()).pw_name
        self.login_grace_time_s = login_grace_time_s
        self.client_alive_interval_s = client_alive_interval_s
        self.client_alive_count_max = client_alive_count_max
        self.start_timeout_s = start_timeout_s
        self.own_home = own_home
        self.hosts: list[SshHost] = []
        self.closed = False
        self._numpy_only_python: str | None = None
        self.client_key = self.workdir / "id_ed25519"
        self.client_public_key = _keygen(self.client_key, "edgecost-test-client")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        _OPEN_FLEETS.add(self)

    def __enter__(self) -> SshFleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # public API -----------------------------------------------------------------------

    def add_host(self, name: str | None = None, *, python: str | None = None, numpy_only: bool = False) -> SshHost:
        """Start one more host and wait until its sshd answers. ``numpy_only`` gives it a
        Python with NumPy and no runtime (``python`` is then the source of that NumPy)."""
        if self.closed:
            raise SshFleetError("the fleet is closed")
        index = next(_host_counter)
        name = name or f"host{len(self.hosts) + 1}"
        if numpy_only:
            python = self.numpy_only_python(python)
        hostdir = self.workdir / f"{index}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        hostdir.mkdir()
        key_path = hostdir / "ssh_host_ed25519_key.1"
        host = SshHost(
            name=name, address="", port=0, user=self.user, client_key=self.client_key,
            host_public_key=_keygen(key_path, f"{name}-hostkey-1"), netns=None, pid=0,
            log_path=hostdir / "sshd.log", python=python or self.python, workdir=hostdir, _fleet=self,
        )
        if self.own_home:
            host.home = hostdir / "home"
            host.home.mkdir()
        (hostdir / "authorized_keys").write_text(self.client_public_key + " edgecost-test-client\n")
        self.hosts.append(host)  # from here on, close() cleans it up even if starting fails
        if self.mode == "netns":
            self._make_namespace(host, index)
            host.port = 22
            self._write_config(host, key_path)
            self._start_sshd(host)
        else:
            host.address = "127.0.0.1"
            for attempt in range(5):  # a free port can be taken between probing and binding
                host.port = _free_port()
                self._write_config(host, key_path)
                try:
                    self._start_sshd(host)
                    break
                except SshFleetError:
                    if attempt == 4 or "Address already in use" not in host.log_text(20):
                        raise
        return host

    def add_hosts(self, count: int, **kwargs) -> list[SshHost]:
        return [self.add_host(**kwargs) for _ in range(count)]

    def known_hosts_text(self) -> str:
        return "".join(h.known_hosts_line() + "\n" for h in self.hosts)

    def write_known_hosts(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.known_hosts_text())
        return path

    def ssh_config_text(self, aliases: dict[SshHost, str] | None = None, known_hosts_file: str | os.PathLike | None = None) -> str:
        """``Host`` blocks for every host (alias defaults to the host's name)."""
        aliases = aliases or {}
        return "\n".join(h.ssh_config_block(aliases.get(h, h.name), known_hosts_file) for h in self.hosts)

    def numpy_only_python(self, source_python: str | None = None) -> str:
        """Path of a Python with NumPy and no other third-party package (made once per fleet)."""
        if self._numpy_only_python is None or source_python is not None:
            self._numpy_only_python = make_numpy_only_python(
                source_python or self.python, self.workdir / f"numpy-only-{len(self.hosts)}"
            )
        return self._numpy_only_python

    def close(self) -> None:
        """Stop every host and delete its namespace and veth; raises after trying everything
        if something survived."""
        if self.closed:
            return
        self.closed = True
        _OPEN_FLEETS.discard(self)
        problems: list[str] = []
        for host in self.hosts:
            try:
                self._stop_host_processes(host)
            except (SshFleetError, OSError) as exc:
                problems.append(str(exc))
            if host.netns is not None:
                ip = _ip() or "ip"
                proc = _run([ip, "netns", "del", host.netns], check=False)
                if proc.returncode != 0 and "No such file" not in proc.stderr:
                    problems.append(f"ip netns del {host.netns}: {proc.stderr.strip()}")
                if host.veth:
                    _run([ip, "link", "del", host.veth], check=False)  # usually gone with the namespace
        if self._own_workdir and not problems:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            raise SshFleetError("test hosts were not cleaned up: " + "; ".join(problems))

    # internals ------------------------------------------------------------------------

    def _make_namespace(self, host: SshHost, index: int) -> None:
        ip = _ip()
        host.netns = f"{PREFIX}-{_OWNER_PID}-{index}"
        veth = f"{PREFIX}{_OWNER_PID}h{_base36(index)}"  # at most 15 characters (IFNAMSIZ)
        if len(veth) > 15:
            raise SshFleetError(f"interface name {veth} is longer than 15 characters")
        with _global_lock():
            octet = _free_octet(ip)
            host.address = f"{NET_PREFIX}.{octet}.2"
            _run([ip, "netns", "add", host.netns])
            _run([ip, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
            host.veth = veth
            _run([ip, "addr", "add", f"{NET_PREFIX}.{octet}.1/24", "dev", veth])
            _run([ip, "link", "set", veth, "up"])
        _run([ip, "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
        _run([ip, "-n", host.netns, "link", "set", "eth0", "up"])
        _run([ip, "-n", host.netns, "link", "set", "lo", "up"])

    def _write_config(self, host: SshHost, key_path: Path) -> None:
        config = f"""\
# edgecost test host {host.name} (tests/support/sshfleet.py)
ListenAddress {host.address}:{host.port}
HostKey {key_path}
PidFile {host.workdir / "sshd.pid"}
AuthorizedKeysFile {host.workdir / "authorized_keys"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel VERBOSE
LoginGraceTime {self.login_grace_time_s}
ClientAliveInterval {self.client_alive_interval_s}
ClientAliveCountMax {self.client_alive_count_max}
UseDNS no
PrintMotd no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 50
Subsystem sftp internal-sftp
{f"SetEnv HOME={host.home}" if host.home else ""}
"""
        host._config_path = host.workdir / "sshd_config"
        host._config_path.write_text(config)

    def _start_sshd(self, host: SshHost) -> None:
        argv = [sshd_path(), "-D", "-e", "-f", str(host._config_path)]
        if host.netns is not None:
            argv = [_ip(), "netns", "exec", host.netns, *argv]  # ip execs sshd: same PID
        argv = [sys.executable, "-I", "-S", "-c", _SUBREAPER_EXEC, *argv]  # execs too: same PID
        with open(host.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            host._popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        host.pid = host._popen.pid
        host.link_is_down = False
        host._wait_reachable(self.start_timeout_s)

    def _stop_host_processes(self, host: SshHost) -> None:
        if host.pid == 0:
            return
        if host.link_is_down and host.netns is not None:
            _run([_ip(), "-n", host.netns, "link", "set", "eth0", "up"], check=False)
        host.link_is_down = False
        # Sessions first, while the listener is alive to reap them; then the listener.
        others = [p for p in host.all_pids() if p != host.pid]
        survivors = terminate(others, grace_s=2.0)
        survivors += terminate([host.pid], popen=host._popen, grace_s=2.0)
        if host._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                host._popen.wait(timeout=1.0)
        if survivors:
            raise SshFleetError(f"host {host.name}: processes {survivors} survived SIGKILL")


# Makes the process a child subreaper, then execs argv (the flag survives exec): processes
# that outlive their SSH session (`nohup cmd &`) are re-parented to the listening sshd instead of
# init, so they stay its descendants and close() finds and kills them in loopback mode too.
# A launcher rather than preexec_fn, which is unsafe while paramiko's threads run.
_SUBREAPER_EXEC = (
    "import ctypes, os, sys; PR_SET_CHILD_SUBREAPER = 36; "
    "ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_octet(ip: str) -> int:
    """The lowest N in 1..254 such that NET_PREFIX.N.0/24 is on no interface and in no route."""
    text = _run([ip, "-4", "-o", "addr", "show"]).stdout + _run([ip, "-4", "route", "show", "table", "all"]).stdout
    used = {int(m.group(1)) for m in re.finditer(rf"\b{re.escape(NET_PREFIX)}\.(\d+)\.", text)}
    for octet in range(1, 255):
        if octet not in used:
            return octet
    raise SshFleetError(f"no free /24 left in {NET_PREFIX}.0.0/16 for another test host")


def make_numpy_only_python(source_python: str, dest: str | os.PathLike) -> str:
    """A venv at ``dest`` (no pip, no system site-packages) whose only third-party package is
    the NumPy of ``source_python``, linked in. Returns its python's path."""
    dest = Path(dest)
    probe = (
        "import json, os, sys, numpy; print(json.dumps({'numpy': os.path.dirname(os.path.dirname(numpy.__file__)),"
        " 'base': getattr(sys, '_base_executable', sys.executable), 'version': '%d.%d' % sys.version_info[:2]}))"
    )
    info = json.loads(_run([source_python, "-c", probe], timeout=60).stdout)
    _run([info["base"], "-m", "venv", "--without-pip", str(dest)], timeout=60)
    site = dest / "lib" / f"python{info['version']}" / "site-packages"
    for entry in Path(info["numpy"]).iterdir():
        if entry.name in ("numpy", "numpy.libs") or re.fullmatch(r"numpy-[^/]+\.(dist|egg)-info", entry.name):
            (site / entry.name).symlink_to(entry)
    python = dest / "bin" / "python"
    check = "import numpy, importlib.util as u; assert u.find_spec('onnxruntime') is None; print(numpy.__version__)"
    proc = _run([str(python), "-c", check], check=False, timeout=60)
    if proc.returncode != 0:
        raise SshFleetError(f"the numpy-only python at {python} does not work: {proc.stderr.strip()}")
    return str(python)
