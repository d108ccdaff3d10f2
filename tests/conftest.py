"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:  # so `support` imports under --import-mode=importlib too
    sys.path.insert(0, _TESTS)

# Real sshd test hosts in network namespaces (tests/support/sshfleet.py).
from support.ssh_fixtures import (  # noqa: E402, F401
    _ssh_fleet_two,
    pytest_runtest_makereport,
    ssh_fleet,
    ssh_hosts_two,
)

# The arm64 Debian root run under qemu-aarch64-static (tests/support/armroot.py).
from support.armroot import arm64_root  # noqa: E402, F401

# Fleet hosts as inventory devices behind an ssh config and known_hosts (tests/support/ssh_devices.py).
from support.ssh_devices import fast_detection, ssh_home  # noqa: E402, F401

# A short real campaign on this machine and its fitted profile (tests/support/profiled.py).
from support.profiled import profiled  # noqa: E402, F401
