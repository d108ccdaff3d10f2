"""The local transport: the agent as a subprocess of the host, same protocol as over SSH."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from .. import paths
from ..errors import AgentError
from .base import AgentSession


class LocalSession(AgentSession):
    """Runs ``edgecost_agent.py serve`` on this machine with this Python (or ``python``)."""

    measures_on_host_cpu = True

    def __init__(self, device, *, python: str | None = None, workdir: str | Path | None = None,
                 agent_file: str | Path | None = None, env: dict[str, str] | None = None):
        # The host's interpreter has the runtimes edgecost installed; an inventory
        # entry for `local` may name another one.
        super().__init__(device, python=python or (device.python if device.python != "python3" else sys.executable))
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edgecost-agent-"))
        self.agent_file = Path(agent_file) if agent_file else paths.agent_path()
        self.env = env
        self.proc: subprocess.Popen | None = None

    def _spawn(self) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
        if not self.agent_file.is_file():
            raise AgentError(f"the device agent file is missing: {self.agent_file}", "reinstall edgecost")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(
                [self.python, str(self.agent_file), "serve", "--workdir", str(self.workdir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches the host, which stops the agent
            )
        except OSError as exc:
            raise AgentError(f"cannot start the agent with {self.python}: {exc}",
                             "check the python path of the 'local' device") from exc
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        return self.proc.stdin, self.proc.stdout, self.proc.stderr

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the agent and any worker it forked
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stage_model(self, local_path: str | Path) -> str:
        # Same filesystem: the agent reads the file where it is.
        return str(Path(local_path).resolve())

    def close(self, cleanup: bool = False) -> None:
        super().close(cleanup=cleanup)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
