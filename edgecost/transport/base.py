"""The host side of the agent's JSON-lines protocol (device_agents/PROTOCOL.md).

A session owns one long-lived agent process on a device.  Requests go one line at a
time; each gets exactly one response line (a bench may be preceded by heartbeat lines,
which only say the agent is alive).  A reader thread turns the agent's stdout into a
queue so that every wait has a timeout.  If the agent process dies, the pending request
fails with ``AgentCrashedError`` and the next request starts a new agent.  A transport
whose link can drop (SSH) sets ``silence_check_s``: after that long without a line from
the agent it checks the link (``_check_link``), and a dead link is a
``ConnectionLostError``, never a model failure.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import IO, Any

from ..errors import (
    AgentCrashedError,
    AgentError,
    ConnectionLostError,
    ModelRejectedError,
    RuntimeMissingError,
)

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
_EOF = object()

# Agent error kinds (PROTOCOL.md) → the host's exception classes.
_ERROR_CLASSES: dict[str, type[AgentError]] = {
    "runtime_missing": RuntimeMissingError,
    "model_rejected": ModelRejectedError,
    "model_not_found": ModelRejectedError,
    "run_failed": ModelRejectedError,
    "crash": AgentCrashedError,
    "oom": AgentCrashedError,
    "timeout": AgentCrashedError,
}

_HINTS = {
    "runtime_missing": "install it on the device (`edgecost devices setup NAME`) or pick another --runtime",
    "model_rejected": "the device's runtime cannot run this model; check its ops and the runtime version",
    "model_not_found": "the model was not staged on the device; retry the command",
    "run_failed": "the runtime loaded the model but inference failed; check the input shapes",
    "crash": "the runtime crashed on this model; the agent is still serving",
    "oom": "the device ran out of memory on this model; try a smaller batch or model",
    "timeout": "the model ran longer than the time limit; raise --max-secs or use a smaller model",
}


def error_from_response(error: dict[str, Any], context: str = "") -> AgentError:
    kind = str(error.get("kind", "agent_error"))
    message = str(error.get("message", "the agent reported an error")).strip().splitlines()[0]
    cls = _ERROR_CLASSES.get(kind, AgentError)
    prefix = f"{context}: " if context else ""
    return cls(f"{prefix}{message}", _HINTS.get(kind), kind=kind)


class LineReader:
    """Reads lines from a stream on a daemon thread so callers can wait with a timeout."""

    def __init__(self, stream: IO[bytes], name: str, keep_last: int = 0):
        self._queue: queue.Queue[Any] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=keep_last) if keep_last else deque(maxlen=1)
        self._keep = keep_last > 0
        self.finished = threading.Event()  # set at end of stream
        self._thread = threading.Thread(target=self._run, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if self._keep:
                    self.tail.append(line)
                else:
                    self._queue.put(line)
        except (OSError, ValueError, EOFError) as exc:  # stream closed under us
            log.debug("reader %s stopped: %s", self._thread.name, exc)
        finally:
            self._queue.put(_EOF)
            self.finished.set()

    def get(self, timeout_s: float) -> str | None:
        """The next line, or None at end of stream. Raises queue.Empty on timeout."""
        item = self._queue.get(timeout=timeout_s)
        if item is _EOF:
            self._queue.put(_EOF)  # stay at EOF for later callers
            return None
        return item


class AgentSession(ABC):
    """One agent process on one device, serving requests in order."""

    #: Seconds to wait for the agent's hello line after start.
    start_timeout_s = 60.0
    #: Heartbeat interval asked of the agent during a bench (0: none; PROTOCOL.md).
    heartbeat_secs = 0.0
    #: After this many seconds without a line from the agent, ``_check_link`` runs (None: never).
    silence_check_s: float | None = None
    #: True where the agent measures on the host's own CPU: host work beside a measurement disturbs it.
    measures_on_host_cpu = False

    def __init__(self, device, *, python: str | None = None):
        self.device = device
        self.python = python or device.python
        self.hello: dict[str, Any] | None = None
        self._next_id = 1
        self._lock = threading.Lock()
        self._stdout: LineReader | None = None
        self._stderr: LineReader | None = None
        self.starts = 0  # how many agent processes this session started

    # -- what each transport provides ------------------------------------------

    @abstractmethod
    def _spawn(self) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
        """Start the agent (``serve``); return its (stdin, stdout, stderr) byte streams."""

    @abstractmethod
    def _alive(self) -> bool:
        """Whether the agent process is still running."""

    @abstractmethod
    def _terminate(self) -> None:
        """Stop the agent process and release the link."""

    @abstractmethod
    def stage_model(self, local_path: str | Path) -> str:
        """Make a model file available on the device; return its path there."""

    # -- hooks of transports whose link can fail -----------------------------------

    def _check_link(self, doing: str) -> None:  # noqa: B027 - a hook; the default has no link
        """Called after ``silence_check_s`` without a line; raise ``ConnectionLostError`` if
        the link is gone (the default has no link to check)."""

    def _loss_error(self, what: str, kind: str) -> AgentError | ConnectionLostError:
        """The error for an agent that stopped answering (``kind``: agent_died or
        agent_timeout); a transport with a link says ``ConnectionLostError`` when it is the
        link that failed.  Called before ``_terminate``."""
        hint = ("the next request starts a new agent" if kind == "agent_died"
                else "it was stopped; the next request starts a new one")
        return AgentCrashedError(what, hint, kind=kind)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the agent if it is not running; returns its hello record."""
        if self.hello is not None and self._alive():
            return self.hello
        self._shutdown_streams()
        stdin, stdout, stderr = self._spawn()
        self.starts += 1
        self._stdin = stdin
        self._stdout = LineReader(stdout, f"agent-stdout-{self.device.name}")
        self._stderr = LineReader(stderr, f"agent-stderr-{self.device.name}", keep_last=50)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            line = self._read_line(deadline, "starting the agent")
            try:
                hello = json.loads(line)
            except json.JSONDecodeError:
                log.debug("agent said before hello: %s", line)
                continue
            if isinstance(hello, dict) and hello.get("hello") == "edgecost-agent":
                break
        if hello.get("protocol_version") != PROTOCOL_VERSION:
            self._terminate()
            raise AgentError(
                f"the agent on {self.device.name} speaks protocol {hello.get('protocol_version')},"
                f" this edgecost speaks {PROTOCOL_VERSION}",
                "upgrade edgecost so both sides match",
            )
        self.hello = hello
        return hello

    def close(self, cleanup: bool = False) -> None:
        """Ask the agent to exit (optionally removing staged models) and release the link."""
        if self.hello is not None and self._alive():
            try:
                self.request("shutdown", {"cleanup": cleanup}, timeout_s=10.0)
            except (AgentError, ConnectionLostError) as exc:
                log.debug("shutdown of agent on %s: %s", self.device.name, exc)
        self._terminate()
        self._shutdown_streams()
        self.hello = None

    def __enter__(self) -> "AgentSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _shutdown_streams(self) -> None:
        self._stdout = None
        self._stderr = None

    # -- requests ------------------------------------------------------------------

    def request(self, cmd: str, args: dict[str, Any] | None = None, *, timeout_s: float = 300.0) -> dict[str, Any]:
        """Send one request and return its result; agent errors raise ``AgentError`` subclasses."""
        with self._lock:
            self.start()
            req_id = self._next_id
            self._next_id += 1
            line = json.dumps({"id": req_id, "cmd": cmd, "args": args or {}}) + "\n"
            try:
                self._stdin.write(line.encode())
                self._stdin.flush()
            except (OSError, ValueError) as exc:
                self._lost(f"sending {cmd!r} failed: {exc}")
            deadline = time.monotonic() + timeout_s
            while True:
                raw = self._read_line(deadline, f"waiting for {cmd!r}")
                try:
                    resp = json.loads(raw)
                except json.JSONDecodeError:
                    log.debug("non-JSON line from agent: %s", raw)
                    continue
                if not isinstance(resp, dict) or resp.get("id") != req_id:
                    log.debug("ignoring stray agent line: %s", raw[:200])
                    continue
                if resp.get("heartbeat") is True and "ok" not in resp:
                    continue  # the agent is alive and still working on this request
                if resp.get("ok"):
                    return resp.get("result") or {}
                if cmd == "shutdown":
                    return {}
                raise error_from_response(resp.get("error") or {}, f"{self.device.name}")

    def _read_line(self, deadline: float, doing: str) -> str:
        """The agent's next stdout line; a silence of ``silence_check_s`` checks the link."""
        assert self._stdout is not None
        while True:
            wait_s = max(0.0, deadline - time.monotonic())
            if self.silence_check_s is not None:
                wait_s = min(wait_s, self.silence_check_s)
            try:
                line = self._stdout.get(wait_s)
            except queue.Empty:
                if time.monotonic() < deadline:
                    self._check_link_or_fail(doing)
                    continue
                self._fail(f"the agent on {self.device.name} did not answer in time while {doing}",
                           "agent_timeout")
            if line is None:
                self._fail(f"the agent on {self.device.name} exited while {doing}", "agent_died")
            return line

    def _check_link_or_fail(self, doing: str) -> None:
        try:
            self._check_link(doing)
        except ConnectionLostError:
            self.hello = None
            self._terminate()
            raise

    def _lost(self, what: str) -> None:
        self._fail(what, "agent_died")

    def _fail(self, what: str, kind: str) -> None:
        tail = ""
        if self._stderr is not None and kind == "agent_died":
            self._stderr.finished.wait(1.0)  # the last words of a dying agent come on stderr
            tail = " | ".join(list(self._stderr.tail)[-3:])
        error = self._loss_error(f"{what}" + (f" (agent stderr: {tail})" if tail else ""), kind)
        self.hello = None
        self._terminate()
        raise error

    # -- convenience ---------------------------------------------------------------

    def ping(self) -> bool:
        return bool(self.request("ping", timeout_s=30.0).get("pong"))

    def sysinfo(self) -> dict[str, Any]:
        return self.request("sysinfo", timeout_s=120.0)

    def bench(self, device_model_path: str, **args: Any) -> dict[str, Any]:
        args = dict(args, model_path=device_model_path)
        if self.heartbeat_secs > 0 and self.start().get("heartbeat"):
            args.setdefault("heartbeat_secs", self.heartbeat_secs)
        max_secs = float(args.get("max_secs", 150.0))
        timeout = float(args.get("timeout_secs", max_secs + 120.0))
        args.setdefault("timeout_secs", timeout)
        # The agent kills its worker at timeout_secs; give it time to say so.
        return self.request("bench", args, timeout_s=timeout + 60.0)
