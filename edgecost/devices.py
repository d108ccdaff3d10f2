"""The device inventory: ``devices.toml`` in the config dir, plus the built-in ``local``.

A device entry says how to reach a device and how models run there by default
(runtime, threads, precision, batch).  A *target* is a device plus those settings;
command-line flags override the defaults.

```toml
[devices.jetson-nano]
host = "nano@192.168.1.40"    # or a Host alias from ~/.ssh/config
runtime = "onnxruntime"
threads = 4
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import paths
from .errors import InventoryError, UnknownDeviceError, UsageError
from .records import RUNTIMES, Target

LOCAL = "local"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Device:
    """One inventory entry."""

    name: str
    host: str | None = None  # "user@host", "host" or an ~/.ssh/config alias; None for local
    port: int | None = None
    user: str | None = None
    key: str | None = None  # IdentityFile; else the ssh agent / ~/.ssh/config
    runtime: str = "onnxruntime"
    runtimes: tuple[str, ...] = ()
    threads: int = 1
    precision: str = "fp32"
    batch: int = 1
    python: str = "python3"  # interpreter on the device
    workdir: str = "~/.cache/edgecost-agent"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "local" if self.host is None else "ssh"

    def target(
        self,
        runtime: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
        batch: int | None = None,
    ) -> Target:
        return Target(
            device=self.name,
            runtime=runtime if runtime is not None else self.runtime,
            threads=threads if threads is not None else self.threads,
            precision=precision if precision is not None else self.precision,
            batch=batch if batch is not None else self.batch,
        )

    def to_toml_table(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        d["runtimes"] = list(self.runtimes)
        defaults = {f.name: f.default for f in fields(Device) if f.name != "name"}
        out = {}
        for k, v in d.items():
            if k == "extra":
                out.update(v)
            elif k in defaults and v == defaults[k] or v in (None, [], ""):
                continue
            else:
                out[k] = v
        return out


def local_device() -> Device:
    return Device(name=LOCAL, notes="this machine, measured without SSH")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid device name {name!r}",
            "use letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return name


class Inventory:
    """Reads and writes ``devices.toml``. ``local`` is always present and cannot be removed."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else paths.inventory_path()
        self._devices = self._load()

    def _load(self) -> dict[str, Device]:
        if not self.path.exists():
            return {}
        try:
            data = tomllib.loads(self.path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InventoryError(f"{self.path} is not valid TOML: {exc}", "fix or delete the file") from exc
        out = {}
        known = {f.name for f in fields(Device)}
        for name, table in (data.get("devices") or {}).items():
            if not isinstance(table, dict):
                raise InventoryError(f"{self.path}: [devices.{name}] must be a table", "fix the file")
            kwargs = {k: v for k, v in table.items() if k in known and k not in ("name", "extra")}
            extra = {k: v for k, v in table.items() if k not in known}
            if "runtimes" in kwargs:
                kwargs["runtimes"] = tuple(kwargs["runtimes"])
            try:
                dev = Device(name=name, extra=extra, **kwargs)
                dev.target()  # validates runtime/threads/precision/batch
            except (TypeError, UsageError) as exc:
                raise InventoryError(f"{self.path}: device {name!r} is invalid: {exc}", "fix its entry") from exc
            out[name] = dev
        return out

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# edgecost device inventory (edit freely or use `edgecost devices add/remove`)", ""]
        for name in sorted(self._devices):
            lines.append(f"[devices.{_toml_key(name)}]")
            for k, v in self._devices[name].to_toml_table().items():
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
            lines.append("")
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.write_text("\n".join(lines))
        tmp.replace(self.path)  # atomic: a failure never leaves half a file

    def names(self) -> list[str]:
        return [LOCAL] + sorted(self._devices)

    def all(self) -> list[Device]:
        return [self.get(n) for n in self.names()]

    def get(self, name: str) -> Device:
        if name == LOCAL:
            return self._devices.get(LOCAL, local_device())
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDeviceError(
                f"unknown device {name!r} (known: {', '.join(self.names())})",
                f"add it with `edgecost devices add {name} --host USER@HOST`",
            ) from None

    def __contains__(self, name: str) -> bool:
        return name == LOCAL or name in self._devices

    def add(self, device: Device, *, replace: bool = False) -> None:
        validate_name(device.name)
        if device.name == LOCAL:
            raise UsageError("'local' is built in and always means this machine", "choose another name")
        if device.name in self._devices and not replace:
            raise UsageError(f"device {device.name!r} already exists", "use --replace to overwrite it")
        if device.runtime not in RUNTIMES:
            raise UsageError(f"unknown runtime {device.runtime!r}", f"use one of: {', '.join(RUNTIMES)}")
        device.target()
        self._devices[device.name] = device
        self.save()

    def remove(self, name: str) -> None:
        if name == LOCAL:
            raise UsageError("'local' is built in and cannot be removed", "nothing to do")
        self.get(name)
        del self._devices[name]
        self.save()


def _toml_key(k: str) -> str:
    return k if re.match(r"^[A-Za-z0-9_-]+$", k) else '"' + k.replace('"', '\\"') + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'
