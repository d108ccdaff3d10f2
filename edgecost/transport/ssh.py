"""The SSH transport: the agent on a device reached over SSH, same protocol as locally.

Host facts come from ``~/.ssh/config`` (HostName, User, Port, IdentityFile, IdentitiesOnly,
ProxyJump, ProxyCommand, UserKnownHostsFile, ConnectTimeout); fields of the inventory entry
override them.  Authentication is by key only (the inventory's ``key``, IdentityFile, the
ssh-agent, ``~/.ssh/id_*``); passwords are never sent or asked for.  Host keys are checked
against known_hosts and never trusted silently: an unknown key is a ``HostKeyError`` that
prints the key's fingerprint and the command to trust it (``edgecost devices trust NAME``),
a changed one a ``HostKeyError`` that says so.

Environment (tests and unusual setups):

``EDGECOST_SSH_CONFIG``
    the ssh config file to read instead of ``~/.ssh/config`` (``none``: read none).
``EDGECOST_KNOWN_HOSTS``
    the only known_hosts file to read and the one ``devices trust`` appends to, instead of
    UserKnownHostsFile / ``~/.ssh/known_hosts`` (plus ``/etc/ssh/ssh_known_hosts``).

A session keeps one SSH connection, uploads the agent (``edgecost_agent-<sha12>.py``) and
each model (``models/<sha256><suffix>``) into the device's work dir by SFTP, content-hashed
so nothing is sent twice (a file already there with the right size is reused, also across
sessions; uploads go to a temporary name and are renamed, so a dropped link never leaves a
half file under the final name), and runs one long-lived agent process on a channel.

A dropped link is noticed without waiting for TCP: during a bench the agent writes a
heartbeat every ``heartbeat_secs``; after ``silence_check_s`` without any line the session
opens a channel as a probe (a round trip, ``link_check_timeout_s``), and a link that does
not answer is a ``ConnectionLostError`` (``edgecost profile`` reconnects and resumes).  An
agent *process* that dies while the link is fine is an ``AgentCrashedError`` (the model is
recorded as failed and the next request starts a new agent).
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
import re
import shlex
import socket
import threading
import time
import uuid
from base64 import b64encode
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import IO, Any

import paramiko

from .. import paths
from ..errors import (
    AgentError,
    AuthError,
    ConnectionLostError,
    HostKeyError,
    ModelRejectedError,
    TransportError,
)
from .base import AgentSession

log = logging.getLogger(__name__)

ENV_SSH_CONFIG = "EDGECOST_SSH_CONFIG"
ENV_KNOWN_HOSTS = "EDGECOST_KNOWN_HOSTS"
GLOBAL_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")
DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
RECONNECT_HINT = ("`edgecost profile` reconnects and resumes by itself; check the device's power and network, "
                  "then run the same command again if it gave up")


# -- host facts -----------------------------------------------------------------------


def ssh_config_path() -> Path | None:
    """The ssh config file to read (``EDGECOST_SSH_CONFIG`` or ``~/.ssh/config``); None for none."""
    value = os.environ.get(ENV_SSH_CONFIG)
    if value is not None:
        return None if value.strip().lower() in ("", "none") else Path(value).expanduser()
    return Path("~/.ssh/config").expanduser()


def load_ssh_config() -> paramiko.SSHConfig:
    path = ssh_config_path()
    if path is None or not path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, UnicodeDecodeError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise TransportError(f"cannot read the ssh config {path}: {exc}",
                             f"fix it, or point {ENV_SSH_CONFIG} at another file") from exc


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key ('SHA256:...')."""
    return "SHA256:" + b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _split_host(spec: str) -> tuple[str | None, str, int | None]:
    """'user@host:port' / 'user@host' / 'host' → (user, host, port); IPv6 in brackets."""
    user, _, host = spec.rpartition("@")
    port = None
    m = re.fullmatch(r"\[(.+)\](?::(\d+))?", host)
    if m:
        host, port = m.group(1), int(m.group(2)) if m.group(2) else None
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        if not p.isdigit():
            raise TransportError(f"bad port in host {spec!r}", "write it as USER@HOST or USER@HOST:PORT")
        port = int(p)
    return user or None, host, port


@dataclass(frozen=True)
class SshEndpoint:
    """Everything needed to reach one SSH host, resolved from the inventory and ssh config."""

    label: str  # the device name (or "jump host X of NAME") for messages
    alias: str  # what was looked up in the ssh config
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    explicit_keys: bool = False  # key files were named (inventory or IdentityFile): a bad one is an error
    allow_agent: bool = True
    look_for_keys: bool = True
    proxy_jump: tuple[str, ...] = ()
    proxy_command: str | None = None
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    known_hosts_read: tuple[Path, ...] = ()
    connect_timeout_s: float = 10.0

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts uses: 'host' on port 22, '[host]:port' otherwise."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    def ssh_command(self) -> str:
        port = f"-p {self.port} " if self.port != 22 else ""
        return f"ssh {port}{self.user}@{self.hostname}"


def _known_hosts_files(config: dict[str, Any]) -> tuple[Path, tuple[Path, ...]]:
    env = os.environ.get(ENV_KNOWN_HOSTS)
    if env:
        path = Path(env).expanduser()
        return path, (path,)
    user_files = [Path(p).expanduser() for p in (config.get("userknownhostsfile") or "").split()]
    user_files = [p for p in user_files if str(p) != "/dev/null"] or [Path("~/.ssh/known_hosts").expanduser()]
    global_files = [Path(p) for p in (config.get("globalknownhostsfile") or "").split()] or [GLOBAL_KNOWN_HOSTS]
    return user_files[0], tuple(user_files + global_files)


def resolve_endpoint(spec: str, *, label: str, port: int | None = None, user: str | None = None,
                     key: str | None = None, proxy_jump: str | None = None,
                     config: paramiko.SSHConfig | None = None) -> SshEndpoint:
    """Resolve ``spec`` ('user@host:port', 'host' or an ssh config alias); arguments override."""
    config = config if config is not None else load_ssh_config()
    spec_user, alias, spec_port = _split_host(spec)
    if not alias:
        raise TransportError(f"{label} has no host name", "set it with `edgecost devices add NAME --host USER@HOST`")
    try:
        found = config.lookup(alias)
    except (paramiko.ssh_exception.ConfigParseError, ImportError, OSError, ValueError) as exc:
        raise TransportError(f"cannot apply the ssh config to {alias!r}: {exc}",
                             f"simplify its Host/Match blocks, or point {ENV_SSH_CONFIG} elsewhere") from exc
    hostname = found.get("hostname") or alias
    try:
        final_port = int(port or spec_port or found.get("port") or 22)
        timeout = float(found.get("connecttimeout") or 10.0)
    except ValueError as exc:
        raise TransportError(f"bad Port or ConnectTimeout for {alias!r} in the ssh config: {exc}",
                             "fix the file") from exc
    identities_only = str(found.get("identitiesonly", "no")).lower() == "yes"
    if key:
        keys, explicit = (str(Path(key).expanduser()),), True
    elif found.get("identityfile"):
        keys, explicit = tuple(str(Path(k).expanduser()) for k in found["identityfile"]), True
    else:
        keys, explicit = (), False
    jump = proxy_jump if proxy_jump is not None else found.get("proxyjump")
    hops = tuple(h.strip() for h in (jump or "").split(",") if h.strip() and h.strip().lower() != "none")
    command = found.get("proxycommand")
    if command and command.strip().lower() == "none":
        command = None
    write, read = _known_hosts_files(found)
    return SshEndpoint(
        label=label, alias=alias, hostname=hostname, port=final_port,
        user=user or spec_user or found.get("user") or getpass.getuser(),
        key_files=keys, explicit_keys=explicit, allow_agent=not identities_only,
        look_for_keys=not explicit, proxy_jump=hops, proxy_command=None if hops else command,
        known_hosts=write, known_hosts_read=read, connect_timeout_s=timeout,
    )


def device_endpoint(device) -> SshEndpoint:
    """The endpoint of an inventory device (its fields override the ssh config)."""
    if device.host is None:
        raise TransportError(f"{device.name} is not an SSH device", "give it a --host")
    return resolve_endpoint(device.host, label=device.name, port=device.port, user=device.user, key=device.key,
                            proxy_jump=(device.extra or {}).get("proxy_jump"))


# -- known hosts ----------------------------------------------------------------------


@dataclass(frozen=True)
class KnownKey:
    key: paramiko.PKey
    path: Path
    lineno: int
    marker: str | None = None  # "@revoked" / "@cert-authority"


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    return fnmatch(name, pattern) if any(c in pattern for c in "*?") else pattern == name


def known_keys(endpoint: SshEndpoint) -> list[KnownKey]:
    """Every known_hosts line (of the files the endpoint reads) that names this host."""
    out: list[KnownKey] = []
    for path in endpoint.known_hosts_read:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise HostKeyError(f"cannot read known hosts file {path}: {exc}", "fix its permissions") from exc
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = None
            if line.startswith("@"):
                marker, _, line = line.partition(" ")
                line = line.strip()
            names = line.split(None, 1)[0].split(",")
            positive = [n for n in names if not n.startswith("!")]
            if any(_name_matches(n[1:], endpoint.known_hosts_name) for n in names if n.startswith("!")):
                continue
            if not any(_name_matches(n, endpoint.known_hosts_name) for n in positive):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(line.split()[:3]), lineno)
            except (paramiko.SSHException, ValueError):
                entry = None
            if entry is not None:
                out.append(KnownKey(entry.key, path, lineno, marker))
    return out


def host_key_status(endpoint: SshEndpoint, key: paramiko.PKey) -> tuple[str, list[KnownKey]]:
    """('known' | 'unknown' | 'changed' | 'revoked', the known_hosts lines naming the host)."""
    known = known_keys(endpoint)
    blob = key.asbytes()
    if any(k.marker == "@revoked" and k.key.asbytes() == blob for k in known):
        return "revoked", known
    plain = [k for k in known if k.marker is None]
    if any(k.key.asbytes() == blob for k in plain):
        return "known", plain
    return ("changed" if plain else "unknown"), plain


def check_host_key(endpoint: SshEndpoint, key: paramiko.PKey, *, device_name: str) -> None:
    """Raise ``HostKeyError`` unless known_hosts has exactly this key for the host."""
    status, known = host_key_status(endpoint, key)
    if status == "known":
        return
    offered = f"{key.get_name()} {fingerprint(key)}"
    if endpoint.label.startswith("jump host"):
        port = f"-p {endpoint.port} " if endpoint.port != 22 else ""
        trust = (f"check it on the jump host (`ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_type(key)}_key.pub`), "
                 f"then add it with `ssh-keyscan {port}{endpoint.hostname} >> {endpoint.known_hosts}`")
    else:
        trust = (f"trust it with `edgecost devices trust {device_name}`, after checking it on the device "
                 f"(`ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_type(key)}_key.pub`)")
    if status == "revoked":
        raise HostKeyError(f"the host key of {endpoint.label} ({endpoint.known_hosts_name}, {offered}) is marked "
                           "@revoked in known_hosts", "do not connect to this host")
    if status == "unknown":
        raise HostKeyError(f"unknown host key for {endpoint.label} ({endpoint.known_hosts_name}): {offered}",
                           f"if it is the right one, {trust}")
    old = known[0]
    raise HostKeyError(
        f"the host key of {endpoint.label} ({endpoint.known_hosts_name}) CHANGED: {old.path}:{old.lineno} has "
        f"{old.key.get_name()} {fingerprint(old.key)}, the host now offers {offered} - "
        "someone may be intercepting the connection (man-in-the-middle), or the device was re-installed",
        f"only if you are sure it is the latter, remove the old key with "
        f"`ssh-keygen -f {old.path} -R '{endpoint.known_hosts_name}'`, then {trust}")


def _key_file_type(key: paramiko.PKey) -> str:
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(key.get_name(), "ecdsa")


def _preferred_host_key_types(endpoint: SshEndpoint, transport: paramiko.Transport) -> None:
    """Ask for a key type known_hosts already has for this host (as OpenSSH does)."""
    try:
        known = {k.key.get_name() for k in known_keys(endpoint) if k.marker is None}
    except HostKeyError:
        return
    if not known:
        return
    options = transport.get_security_options()
    current = list(options.key_types)
    wanted = set(known)
    if "ssh-rsa" in known:
        wanted |= {"rsa-sha2-512", "rsa-sha2-256"}
    first = [t for t in current if t in wanted or any(t.startswith(k + "-cert") for k in known)]
    if first:
        options.key_types = tuple(first + [t for t in current if t not in first])


def append_known_host(endpoint: SshEndpoint, key: paramiko.PKey) -> Path:
    """Add the host's key to the endpoint's known_hosts file (created 0600 in a 0700 dir)."""
    path = endpoint.known_hosts
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        existed = path.exists()
        text = path.read_text() if existed else ""
        with open(path, "a") as fh:
            if text and not text.endswith("\n"):
                fh.write("\n")
            fh.write(f"{endpoint.known_hosts_name} {key.get_name()} {key.get_base64()}\n")
        if not existed:
            path.chmod(0o600)
    except OSError as exc:
        raise HostKeyError(f"cannot write {path}: {exc}", f"check its permissions, or set {ENV_KNOWN_HOSTS}") from exc
    return path


# -- the link -------------------------------------------------------------------------


class SshLink:
    """One authenticated SSH connection (and the jump hosts it goes through)."""

    banner_timeout_s = 15.0
    auth_timeout_s = 20.0
    keepalive_s = 15

    def __init__(self, endpoint: SshEndpoint, transport: paramiko.Transport, jumps: list["SshLink"]):
        self.endpoint = endpoint
        self.transport = transport
        self.jumps = jumps
        self._sftp: paramiko.SFTPClient | None = None

    # opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, endpoint: SshEndpoint, *, device_name: str, authenticate: bool = True,
             via: "SshLink | None" = None, config: paramiko.SSHConfig | None = None) -> "SshLink":
        """Connect (through the endpoint's jump hosts), check the host key, authenticate."""
        jumps: list[SshLink] = []
        try:
            if via is None and endpoint.proxy_jump:
                config = config if config is not None else load_ssh_config()
                for hop in endpoint.proxy_jump:
                    hop_endpoint = resolve_endpoint(hop, label=f"jump host {hop} of {endpoint.label}",
                                                    proxy_jump="none", config=config)
                    jumps.append(cls.open(hop_endpoint, device_name=device_name, via=jumps[-1] if jumps else None))
                via = jumps[-1]
            sock = cls._socket(endpoint, via)
            transport = cls._handshake(endpoint, sock, device_name=device_name)
            link = cls(endpoint, transport, jumps)
            if authenticate:
                try:
                    link._authenticate()
                except BaseException:
                    transport.close()
                    raise
                transport.set_keepalive(cls.keepalive_s)
            return link
        except BaseException:
            for j in reversed(jumps):
                j.close()
            raise

    @staticmethod
    def _unreachable(endpoint: SshEndpoint, why: str) -> TransportError:
        return TransportError(
            f"cannot reach {endpoint.label} at {endpoint.hostname}:{endpoint.port}: {why}",
            f"check that the device is on and on the network and that host/port are right "
            f"(inventory or ~/.ssh/config); try `{endpoint.ssh_command()}`")

    @classmethod
    def _socket(cls, endpoint: SshEndpoint, via: "SshLink | None"):
        timeout = endpoint.connect_timeout_s
        if via is not None:
            try:
                return via.transport.open_channel("direct-tcpip", (endpoint.hostname, endpoint.port),
                                                  ("127.0.0.1", 0), timeout=timeout)
            except paramiko.ChannelException as exc:
                raise cls._unreachable(endpoint, f"the jump host {via.endpoint.hostname} could not connect "
                                                 f"to it ({exc.text or exc})") from exc
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise cls._unreachable(endpoint, f"through the jump host {via.endpoint.hostname}: "
                                                 f"{exc or 'no answer'}") from exc
        if endpoint.proxy_command:
            try:
                return paramiko.ProxyCommand(endpoint.proxy_command)
            except (paramiko.SSHException, OSError) as exc:
                raise cls._unreachable(endpoint, f"ProxyCommand failed: {exc}") from exc
        try:
            sock = socket.create_connection((endpoint.hostname, endpoint.port), timeout=timeout)
        except socket.gaierror as exc:
            raise TransportError(f"cannot resolve the host name {endpoint.hostname!r} of {endpoint.label}: "
                                 f"{exc.strerror or exc}",
                                 "check the spelling, the HostName in ~/.ssh/config, or use the IP address") from exc
        except TimeoutError as exc:
            raise cls._unreachable(endpoint, f"no answer within {timeout:.0f} s") from exc
        except ConnectionRefusedError as exc:
            raise cls._unreachable(endpoint, "connection refused (no sshd on that port?)") from exc
        except OSError as exc:
            raise cls._unreachable(endpoint, exc.strerror or str(exc)) from exc
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    @classmethod
    def _handshake(cls, endpoint: SshEndpoint, sock, *, device_name: str) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        transport.banner_timeout = cls.banner_timeout_s
        transport.handshake_timeout = cls.banner_timeout_s
        transport.auth_timeout = cls.auth_timeout_s
        _preferred_host_key_types(endpoint, transport)
        try:
            transport.start_client(timeout=cls.banner_timeout_s)
            key = transport.get_remote_server_key()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise cls._unreachable(endpoint, f"the SSH handshake failed ({exc or type(exc).__name__})") from exc
        try:
            check_host_key(endpoint, key, device_name=device_name)
        except BaseException:
            transport.close()
            raise
        return transport

    def _authenticate(self) -> None:
        ep, t = self.endpoint, self.transport
        tried: list[str] = []
        problems: list[str] = []

        def attempt(pkey: paramiko.PKey, label: str) -> bool:
            try:
                rest = t.auth_publickey(ep.user, pkey)
            except paramiko.BadAuthenticationType as exc:
                raise AuthError(f"{ep.address} ({ep.label}) does not accept SSH keys (it offers: "
                                f"{', '.join(exc.allowed_types) or 'nothing'})",
                                "enable PubkeyAuthentication in the device's sshd_config; edgecost never sends "
                                "passwords") from exc
            except paramiko.AuthenticationException:
                tried.append(label)
                return False
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._unreachable(ep, f"the connection failed during authentication ({exc})") from exc
            if t.is_authenticated():
                return True
            raise AuthError(f"{ep.address} ({ep.label}) accepted key {label} but asks for another factor "
                            f"({', '.join(rest)})", "edgecost needs key-only login; allow it for this user")

        files = list(ep.key_files)
        if ep.look_for_keys:
            files += [str(Path(k).expanduser()) for k in DEFAULT_KEYS]
        seen = set()
        agent_keys: list[paramiko.PKey] = []
        agent = None
        if ep.allow_agent:
            try:
                agent = paramiko.Agent()
                agent_keys = list(agent.get_keys())
            except (paramiko.SSHException, OSError) as exc:
                log.debug("ssh-agent unavailable: %s", exc)
        try:
            for path in files:
                if path in seen:
                    continue
                seen.add(path)
                if not os.path.isfile(path):
                    if ep.explicit_keys and path in ep.key_files:
                        problems.append(f"key file {path} does not exist")
                    continue
                try:
                    pkey = paramiko.PKey.from_path(path)
                except paramiko.PasswordRequiredException:
                    problems.append(f"key {path} has a passphrase (load it with `ssh-add {path}`)")
                    continue
                except (paramiko.SSHException, OSError, ValueError) as exc:
                    problems.append(f"cannot read key {path}: {exc}")
                    continue
                if attempt(pkey, path):
                    return
            for pkey in agent_keys:
                if attempt(pkey, f"ssh-agent key {fingerprint(pkey)}"):
                    return
        finally:
            if agent is not None:
                agent.close()
        where = f"{ep.address} ({ep.label})"
        note = f" ({'; '.join(problems)})" if problems else ""
        if not tried:
            raise AuthError(f"no usable SSH key to log in to {where}{note}",
                            "make one with `ssh-keygen -t ed25519`, install it with "
                            f"`ssh-copy-id -p {ep.port} {ep.user}@{ep.hostname}`, and name it with --key or "
                            "IdentityFile in ~/.ssh/config")
        first = tried[0] if not tried[0].startswith("ssh-agent") else "KEY"
        raise AuthError(f"SSH key login to {where} was refused; tried {', '.join(tried)}{note}",
                        f"install the public key on the device (`ssh-copy-id -i {first}.pub -p {ep.port} "
                        f"{ep.user}@{ep.hostname}`), or point the device at the right key "
                        f"(`edgecost devices add {ep.label} --host ... --key PATH --replace` or IdentityFile "
                        "in ~/.ssh/config)")

    # using -------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.transport.is_active()

    def alive(self, timeout_s: float) -> bool:
        """Whether the other end still answers: opens (and closes) a channel, one round trip."""
        if not self.active:
            return False
        try:
            channel = self.transport.open_session(timeout=timeout_s)
        except paramiko.ChannelException:
            return True  # refused (too many sessions), but it answered
        except (paramiko.SSHException, OSError, EOFError):
            return False
        channel.close()
        return True

    def run(self, command: str, *, timeout_s: float) -> tuple[int, str, str]:
        """Run a command; returns (exit status, stdout, stderr). Raises ``ConnectionLostError``."""
        deadline = time.monotonic() + timeout_s
        try:
            channel = self.transport.open_session(timeout=timeout_s)
            channel.settimeout(timeout_s)
            channel.exec_command(command)
            out, err = bytearray(), bytearray()
            while True:
                busy = False
                if channel.recv_ready():
                    out += channel.recv(65536)
                    busy = True
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    busy = True
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    channel.close()
                    raise TimeoutError(f"{command.split()[0]} did not finish within {timeout_s:.0f} s")
                if not busy:
                    time.sleep(0.002)
            status = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLostError(f"running a command on {self.endpoint.label} failed: {exc}",
                                      RECONNECT_HINT) from exc
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    def sftp(self, timeout_s: float) -> paramiko.SFTPClient:
        if self._sftp is None or self._sftp.get_channel().closed:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ConnectionLostError(f"cannot open SFTP to {self.endpoint.label}: {exc}",
                                          "check that the device's sshd has the sftp subsystem") from exc
            self._sftp.get_channel().settimeout(timeout_s)
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass
            self._sftp = None
        self.transport.close()
        for j in reversed(self.jumps):
            j.close()


def fetch_host_key(device) -> tuple[SshEndpoint, paramiko.PKey, str]:
    """The key a device's sshd offers, without logging in; and whether known_hosts knows it.

    Returns (endpoint, key, status), status as ``host_key_status``.  Jump
    hosts on the way must be trusted already.
    """
    endpoint = device_endpoint(device)
    jumps: list[SshLink] = []
    if endpoint.proxy_jump:
        config = load_ssh_config()
        for hop in endpoint.proxy_jump:
            hop_ep = resolve_endpoint(hop, label=f"jump host {hop} of {endpoint.label}", proxy_jump="none",
                                      config=config)
            jumps.append(SshLink.open(hop_ep, device_name=device.name, via=jumps[-1] if jumps else None))
    try:
        sock = SshLink._socket(endpoint, jumps[-1] if jumps else None)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = SshLink.banner_timeout_s
        transport.handshake_timeout = SshLink.banner_timeout_s
        try:
            transport.start_client(timeout=SshLink.banner_timeout_s)
            key = transport.get_remote_server_key()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshLink._unreachable(endpoint, f"the SSH handshake failed ({exc})") from exc
        finally:
            transport.close()
    finally:
        for j in reversed(jumps):
            j.close()
    return endpoint, key, host_key_status(endpoint, key)[0]


# -- the session ------------------------------------------------------------------------


@dataclass
class UploadStats:
    """What a session sent by SFTP (models and the agent)."""

    files_sent: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    files_reused: int = 0  # already on the device (same content hash and size)

    @property
    def mb_per_s(self) -> float | None:
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else None


def _sh_path(path: str) -> str:
    """A shell word for a path on the device; a leading ~ becomes "$HOME"."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _ChannelWriter:
    """The agent's stdin: paramiko errors become OSError, which the base class understands."""

    def __init__(self, channel: paramiko.Channel):
        self.channel = channel

    def write(self, data: bytes) -> int:
        try:
            self.channel.sendall(data)
        except (paramiko.SSHException, EOFError) as exc:
            raise OSError(str(exc) or "the channel is closed") from exc
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError):
            pass


class SshSession(AgentSession):
    """The agent on an SSH device: one connection, one agent process, models by SFTP."""

    #: Heartbeat interval asked of the agent during a bench.
    heartbeat_secs = 2.0
    #: Seconds without a line from the agent before the link is probed.
    silence_check_s = 10.0
    #: How long the probe (a channel open) may take before the link counts as dead.
    link_check_timeout_s = 8.0
    #: Timeout of each SFTP operation and of helper commands.
    sftp_timeout_s = 30.0
    command_timeout_s = 30.0

    def __init__(self, device, *, python: str | None = None, agent_file: str | Path | None = None,
                 env: dict[str, str] | None = None):
        super().__init__(device, python=python)
        self.agent_file = Path(agent_file) if agent_file else paths.agent_path()
        self.env = dict(env or {})  # extra environment of the remote agent
        self.endpoint: SshEndpoint | None = None
        self.workdir: str | None = None  # absolute, on the device
        self.upload = UploadStats()
        self.timings: dict[str, float] = {}
        self._link: SshLink | None = None
        self._channel: paramiko.Channel | None = None
        self._agent_remote: str | None = None
        self._agent_pid: int | None = None
        self._staged: dict[str, str] = {}  # remote path -> local path
        self._link_lock = threading.RLock()

    # -- connection --------------------------------------------------------------

    def connect(self) -> SshLink:
        """The live connection, (re)opened if needed, with the work dir resolved."""
        with self._link_lock:
            if self._link is not None and self._link.active:
                return self._link
            self._drop_link()
            t0 = time.monotonic()
            self.endpoint = device_endpoint(self.device)
            self._link = SshLink.open(self.endpoint, device_name=self.device.name)
            self.timings["connect_s"] = time.monotonic() - t0
            try:
                self._resolve_workdir()
            except BaseException:
                self._drop_link()
                raise
            return self._link

    def _resolve_workdir(self) -> None:
        t0 = time.monotonic()
        wd = _sh_path(self.device.workdir)
        status, out, err = self._link.run(f"mkdir -p {wd}/models && cd {wd} && pwd -P",
                                          timeout_s=self.command_timeout_s)
        lines = out.strip().splitlines()
        if status != 0 or not lines:
            why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            raise TransportError(f"cannot create the work dir {self.device.workdir} on {self.device.name}: {why}",
                                 f"pick a writable one: `edgecost devices add {self.device.name} --host ... "
                                 "--workdir DIR --replace`")
        self.workdir = lines[-1].strip()
        self.timings["workdir_s"] = time.monotonic() - t0

    def _drop_link(self) -> None:
        with self._link_lock:
            link, self._link = self._link, None
            self._agent_remote = None  # checked again on the next connection
            if link is not None:
                link.close()

    def _link_ok(self) -> bool:
        link = self._link
        return link is not None and link.alive(self.link_check_timeout_s)

    @property
    def address(self) -> str:
        return self.endpoint.address if self.endpoint else str(self.device.host)

    # -- AgentSession hooks --------------------------------------------------------

    def start(self) -> dict[str, Any]:
        fresh = self.hello is None or not self._alive()
        t0 = time.monotonic()
        hello = super().start()
        if fresh:
            self.timings["session_setup_s"] = time.monotonic() - t0
            self._agent_pid = hello.get("pid")
        return hello

    def _spawn(self) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
        link = self.connect()
        self._ensure_agent()
        t0 = time.monotonic()
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        workdir = shlex.quote(self.workdir)
        command = (f"cd {workdir} && exec {'env ' + env + ' ' if env else ''}"
                   f"{_sh_path(self.python)} {shlex.quote(self._agent_remote)} serve --workdir {workdir}")
        try:
            channel = link.transport.open_session(timeout=self.link_check_timeout_s)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop_link()
            raise ConnectionLostError(f"cannot start the agent on {self.device.name}: {exc}", RECONNECT_HINT) from exc
        self._channel = channel
        self.timings["agent_exec_s"] = time.monotonic() - t0
        return _ChannelWriter(channel), channel.makefile("rb"), channel.makefile_stderr("rb")

    def _alive(self) -> bool:
        channel = self._channel
        return (channel is not None and not channel.closed and not channel.exit_status_ready()
                and self._link is not None and self._link.active)

    def _terminate(self) -> None:
        channel, self._channel = self._channel, None
        pid, self._agent_pid = self._agent_pid, None
        if channel is None:
            return
        try:
            channel.shutdown_write()  # end of input: the agent exits after its current request
        except (paramiko.SSHException, OSError, EOFError):
            pass
        link = self._link
        if link is not None and link.active and not channel.exit_status_ready():
            if not channel.status_event.wait(2.0) and pid:
                try:  # stuck (a timeout): stop it; its worker dies with it (PR_SET_PDEATHSIG)
                    link.run(f"kill -KILL {int(pid)}", timeout_s=5.0)
                except ConnectionLostError:
                    pass
        channel.close()

    def _check_link(self, doing: str) -> None:
        if self._link_ok():
            return
        self._drop_link()
        raise ConnectionLostError(
            f"the SSH link to {self.device.name} ({self.address}) dropped while {doing}: "
            f"no answer for {self.silence_check_s + self.link_check_timeout_s:.0f} s", RECONNECT_HINT)

    def _loss_error(self, what: str, kind: str) -> AgentError | ConnectionLostError:
        starting = self.hello is None
        if not self._link_ok():
            self._drop_link()
            return ConnectionLostError(f"{what}: the SSH link to {self.address} dropped", RECONNECT_HINT)
        channel = self._channel
        status = channel.exit_status if channel is not None and channel.exit_status_ready() else None
        if kind == "agent_died" and starting and status in (126, 127):
            return AgentError(
                f"cannot run the device's Python {self.python!r} on {self.device.name} "
                f"({'not found' if status == 127 else 'not executable'})",
                f"install python3 (>= 3.6) there, or name the interpreter with `edgecost devices add "
                f"{self.device.name} --host ... --python PATH --replace`; `edgecost devices setup "
                f"{self.device.name}` checks the rest", kind="python_missing")
        if kind == "agent_died" and starting and "SyntaxError" in what:
            return AgentError(f"the Python {self.python!r} on {self.device.name} is too old for the agent: {what}",
                              "the agent needs Python >= 3.6; point --python at a newer one",
                              kind="python_too_old")
        if kind == "agent_died" and status is not None and status != 0:
            what += f" (exit status {status})" if status > 0 else " (killed by a signal)"
        return super()._loss_error(what, kind)

    # -- files ---------------------------------------------------------------------------

    def _ensure_agent(self) -> None:
        if self._agent_remote is not None:
            return
        t0 = time.monotonic()
        if not self.agent_file.is_file():
            raise AgentError(f"the device agent file is missing: {self.agent_file}", "reinstall edgecost")
        digest = _file_sha256(self.agent_file)
        remote = f"{self.workdir}/edgecost_agent-{digest[:12]}.py"
        self.put_file(self.agent_file, remote)
        self._agent_remote = remote
        self.timings["agent_upload_s"] = time.monotonic() - t0

    def stage_model(self, local_path: str | Path) -> str:
        local = Path(local_path)
        if not local.is_file():
            raise ModelRejectedError(f"model file not found: {local}", "check the path", kind="model_not_found")
        self.connect()
        remote = f"{self.workdir}/models/{_file_sha256(local)}{local.suffix.lower()}"
        if remote not in self._staged:
            self.put_file(local, remote)
            self._staged[remote] = str(local)
        return remote

    def put_file(self, local: Path, remote: str) -> None:
        """Upload unless the device has it already; via a temporary name and a rename."""
        link = self.connect()
        size = local.stat().st_size
        tmp = f"{remote}.part-{uuid.uuid4().hex[:12]}"
        try:
            sftp = link.sftp(self.sftp_timeout_s)
            try:
                if sftp.stat(remote).st_size == size:
                    self.upload.files_reused += 1
                    return
            except FileNotFoundError:
                pass
            t0 = time.monotonic()
            sftp.put(str(local), tmp, confirm=True)
            try:
                sftp.posix_rename(tmp, remote)
            except OSError:  # a server without the posix-rename extension
                try:
                    sftp.remove(remote)
                except FileNotFoundError:
                    pass
                sftp.rename(tmp, remote)
            self.upload.files_sent += 1
            self.upload.bytes_sent += size
            self.upload.seconds += time.monotonic() - t0
        except (TimeoutError, paramiko.SSHException, EOFError) as exc:
            self._drop_link()
            raise ConnectionLostError(f"uploading {local.name} to {self.device.name} failed: "
                                      f"{exc or 'the SFTP operation timed out'}", RECONNECT_HINT) from exc
        except OSError as exc:
            if not self._link_ok():
                self._drop_link()
                raise ConnectionLostError(f"uploading {local.name} to {self.device.name} failed: {exc}",
                                          RECONNECT_HINT) from exc
            try:
                link.sftp(self.sftp_timeout_s).remove(tmp)
            except (OSError, paramiko.SSHException, EOFError):
                pass
            raise TransportError(f"cannot upload {local.name} to {self.device.name}:{remote}: {exc}",
                                 "check free space and permissions of the work dir on the device") from exc

    # -- requests ------------------------------------------------------------------------

    def bench(self, device_model_path: str, **args: Any) -> dict[str, Any]:
        try:
            return super().bench(device_model_path, **args)
        except ModelRejectedError as exc:
            # Another session on the same device may have cleaned the file up: send it again once.
            local = self._staged.pop(device_model_path, None)
            if exc.kind != "model_not_found" or local is None or not Path(local).is_file():
                raise
            return super().bench(self.stage_model(local), **args)

    def close(self, cleanup: bool = False) -> None:
        """Stop the agent; with ``cleanup``, remove the models this session staged; disconnect."""
        try:
            super().close(cleanup=False)  # the agent's own cleanup would remove other sessions' models too
            link = self._link
            if cleanup and self._staged and link is not None and link.active:
                try:
                    sftp = link.sftp(self.sftp_timeout_s)
                    for remote in list(self._staged):
                        try:
                            sftp.remove(remote)
                        except FileNotFoundError:
                            pass
                except (OSError, paramiko.SSHException, EOFError, TransportError) as exc:
                    log.debug("cleanup on %s: %s", self.device.name, exc)
            self._staged.clear()
            up = self.upload
            if up.files_sent:
                log.info("%s: sent %d files (%.1f MB) at %.1f MB/s, reused %d already there", self.device.name,
                         up.files_sent, up.bytes_sent / 1e6, up.mb_per_s or 0.0, up.files_reused)
        finally:
            self._drop_link()

    @property
    def pid(self) -> int | None:
        """The agent's process id on the device."""
        return self._agent_pid
