"""How the host talks to a device agent: a local subprocess or an SSH session, same protocol."""

from __future__ import annotations

from .base import AgentSession, PROTOCOL_VERSION
from .local import LocalSession

__all__ = ["AgentSession", "LocalSession", "PROTOCOL_VERSION", "open_session"]


def open_session(device, **kwargs) -> AgentSession:
    """An agent session for an inventory device (not yet started; it starts on first use)."""
    if device.kind == "local":
        return LocalSession(device, **kwargs)
    from .ssh import SshSession  # paramiko is imported only when a device needs it

    return SshSession(device, **kwargs)
