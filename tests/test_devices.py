"""The device inventory: devices.toml round trips, local is built in, bad entries are clear errors."""

from __future__ import annotations

import pytest

from edgecost.devices import Device, Inventory
from edgecost.errors import InvalidTargetError, InventoryError, UnknownDeviceError, UsageError


def test_local_is_always_there(tmp_path):
    inv = Inventory(tmp_path / "devices.toml")
    assert inv.names() == ["local"]
    assert inv.get("local").kind == "local"
    with pytest.raises(UsageError):
        inv.remove("local")
    with pytest.raises(UsageError):
        inv.add(Device(name="local", host="x"))


def test_add_list_remove_round_trip(tmp_path):
    path = tmp_path / "devices.toml"
    inv = Inventory(path)
    inv.add(Device(name="jetson-nano", host="nano@192.168.1.40", threads=4, notes='quote " inside'))
    inv.add(Device(name="pi4", host="pi4", runtime="tflite"))
    again = Inventory(path)
    assert again.names() == ["local", "jetson-nano", "pi4"]
    nano = again.get("jetson-nano")
    assert (nano.host, nano.threads, nano.kind, nano.notes) == ("nano@192.168.1.40", 4, "ssh", 'quote " inside')
    assert again.get("pi4").target().runtime == "tflite"
    assert again.get("pi4").target(threads=2).threads == 2
    with pytest.raises(UsageError, match="already exists"):
        again.add(Device(name="pi4", host="other"))
    again.add(Device(name="pi4", host="other"), replace=True)
    again.remove("pi4")
    assert Inventory(path).names() == ["local", "jetson-nano"]


def test_unknown_device_names_known_ones(tmp_path):
    inv = Inventory(tmp_path / "devices.toml")
    with pytest.raises(UnknownDeviceError, match="known: local") as e:
        inv.get("nope")
    assert "edgecost devices add nope" in str(e.value)
    assert e.value.exit_code == 2


@pytest.mark.parametrize("text", ["[devices.x\nhost=", "[devices.x]\nthreads = 0\nhost='h'\n",
                                  "[devices.x]\nruntime = 'tensorflow'\n", "devices = 3\n[devices.y]\n"])
def test_bad_inventory_files(tmp_path, text):
    path = tmp_path / "devices.toml"
    path.write_text(text)
    with pytest.raises(InventoryError):
        Inventory(path)


def test_bad_names_and_threads(tmp_path):
    inv = Inventory(tmp_path / "devices.toml")
    with pytest.raises(UsageError):
        inv.add(Device(name="bad name!", host="h"))
    with pytest.raises(InvalidTargetError):
        inv.add(Device(name="ok", host="h", threads=-1))
