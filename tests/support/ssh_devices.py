"""Fleet hosts as edgecost devices: an EDGECOST_HOME, an ssh config and a known_hosts file.

``ssh_home`` (function scope) points ``EDGECOST_HOME``, ``EDGECOST_SSH_CONFIG`` and
``EDGECOST_KNOWN_HOSTS`` at fresh files under ``tmp_path``; ``ssh_home.add(host, name)`` writes
the host's ``Host`` block (and, unless ``trusted=False``, its known_hosts line) and adds it to
the inventory with the host's Python.  ``ssh_home.env`` is the environment for an ``edgecost``
subprocess.  ``fast_detection`` makes SSH sessions notice a dead link within seconds.
``wheel_from_installed`` packs an installed distribution into a wheel (for
``devices setup --wheels`` without a package index).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import sqlite3
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.sshfleet import SshHost


@dataclass
class SshHome:
    root: Path
    config: Path
    known_hosts: Path
    hosts: dict[str, SshHost] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(EDGECOST_HOME=str(self.root), EDGECOST_SSH_CONFIG=str(self.config),
                   EDGECOST_KNOWN_HOSTS=str(self.known_hosts), PYTHONUNBUFFERED="1")
        return env

    def add(self, host: SshHost, name: str, *, trusted: bool = True, python: str | None = None,
            extra_config: str = "", **fields):
        """Write the host's ssh config block (alias = ``name``) and add it to the inventory."""
        from edgecost.devices import Device, Inventory

        block = host.ssh_config_block(name) + extra_config
        with self.config.open("a") as fh:
            fh.write(block + "\n")
        if trusted:
            with self.known_hosts.open("a") as fh:
                fh.write(host.known_hosts_line() + "\n")
        self.hosts[name] = host
        device = Device(name=name, host=name, python=python or host.python, **fields)
        Inventory().add(device, replace=True)
        return device

    def store_dump(self) -> list[str]:
        """Every row of the store, as SQL (to check that a failure touched nothing)."""
        path = self.root / "edgecost.sqlite"
        if not path.exists():
            return []
        conn = sqlite3.connect(path)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()


@pytest.fixture
def ssh_home(tmp_path, monkeypatch) -> SshHome:
    root = tmp_path / "edgecost-home"
    root.mkdir()
    home = SshHome(root=root, config=tmp_path / "ssh_config", known_hosts=tmp_path / "known_hosts")
    home.config.write_text("# edgecost test ssh config\n")
    home.known_hosts.write_text("")
    monkeypatch.setenv("EDGECOST_HOME", str(root))
    monkeypatch.setenv("EDGECOST_SSH_CONFIG", str(home.config))
    monkeypatch.setenv("EDGECOST_KNOWN_HOSTS", str(home.known_hosts))
    return home


@pytest.fixture
def fast_detection(monkeypatch):
    """Notice a dead link within a few seconds instead of ~20 s."""
    from edgecost.transport.ssh import SshSession

    monkeypatch.setattr(SshSession, "heartbeat_secs", 0.3)
    monkeypatch.setattr(SshSession, "silence_check_s", 1.5)
    monkeypatch.setattr(SshSession, "link_check_timeout_s", 2.0)
    monkeypatch.setattr(SshSession, "sftp_timeout_s", 5.0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def wheel_from_installed(dist_name: str, out_dir: Path) -> Path:
    """A wheel of an installed distribution (its files as installed, RECORD rewritten)."""
    dist = importlib.metadata.distribution(dist_name)
    base = Path(dist.locate_file(""))
    info_dir = next(Path(str(f)).parts[0] for f in dist.files if str(f).endswith(".dist-info/METADATA"))
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")] or ["py3-none-any"]
    name = info_dir[: -len(".dist-info")]
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]  # py2-none-any + py3-none-any
    wheel = out_dir / f"{name}-{'-'.join('.'.join(p) for p in parts)}.whl"
    skip = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
    records = io.StringIO()
    writer = csv.writer(records, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for rel in dist.files:
            rel_path = Path(str(rel))
            if ".." in rel_path.parts or "__pycache__" in rel_path.parts:
                continue
            if rel_path.parts[0] == info_dir and rel_path.name in skip:
                continue
            data = (base / rel_path).read_bytes()
            zf.writestr(str(rel_path), data)
            writer.writerow([str(rel_path), _record_hash(data), len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        zf.writestr(f"{info_dir}/RECORD", records.getvalue())
    return wheel


def make_tiny_onnx(path: Path, channels: int = 8, size: int = 16) -> Path:
    """Conv + Relu on a 1x3xSxS input: a model every onnxruntime loads in milliseconds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(channels)
    weights = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.1, "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["y"], name="relu")],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
