"""The one exception tree of edgecost.

Every error carries a one-line message that says what was wrong and what to do
(``hint``).  The CLI prints ``error: <message>`` and exits with ``exit_code``:
2 for bad input or usage, 1 for a failure while running.  No traceback reaches
a user for any of these.
"""

from __future__ import annotations


class EdgecostError(Exception):
    """Base of every error edgecost raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())  # one line, always


# --- bad input (exit code 2) -------------------------------------------------


class UsageError(EdgecostError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class ModelFileError(UsageError):
    """A model file is missing, unreadable, of an unknown format, or corrupt."""


class DynamicShapeError(UsageError):
    """A model input has a dimension that is not fixed."""


class UnknownDeviceError(UsageError):
    """A device name is not in the inventory."""


class InvalidTargetError(UsageError):
    """A target setting (threads, batch, runtime, precision) is not valid."""


class InventoryError(UsageError):
    """devices.toml cannot be read or a device entry is invalid."""


# --- failures while running (exit code 1) ------------------------------------


class NoProfileError(EdgecostError):
    """There is no trained profile for the target; nothing is invented."""


class ProfileFormatError(EdgecostError):
    """A saved profile file cannot be read."""


class StoreError(EdgecostError):
    """The measurement store cannot be opened or written."""


class ConversionError(EdgecostError):
    """A model could not be converted, or the converted model disagrees with the source."""


class AgentError(EdgecostError):
    """The device agent reported a failure, or stopped answering."""

    def __init__(self, message: str, hint: str | None = None, kind: str = "agent_error"):
        super().__init__(message, hint)
        self.kind = kind


class RuntimeMissingError(AgentError):
    """The device lacks the runtime the target asks for."""


class ModelRejectedError(AgentError):
    """The device's runtime refused to load or run the model."""


class AgentCrashedError(AgentError):
    """The agent process (or its worker) died while serving a request."""


class TransportError(EdgecostError):
    """The link to a device failed (connect, auth, transfer, dropped link)."""


class HostKeyError(TransportError):
    """A host key is unknown or changed; it is never trusted silently."""


class AuthError(TransportError):
    """SSH authentication was refused."""


class ConnectionLostError(TransportError):
    """An established link dropped; callers may reconnect and resume."""
