"""pytest fixtures for the sshd test hosts of :mod:`support.sshfleet` (exported by tests/conftest.py).

``ssh_fleet``       factory, function scope: ``ssh_fleet(hosts=1, *, numpy_only=False, **SshFleet
                    options) -> SshFleet``; every fleet it made is closed after the test.
``ssh_hosts_two``   two hosts started once per session (a ``list[SshHost]``).

Without sshd the tests skip, unless ``EDGECOST_REQUIRE_FLEET=1`` (set by ``.ci/run``): then they fail.

A failed test that used either gets the tail of each live host's sshd log in its report.
"""

from __future__ import annotations

import os

import pytest

from support.sshfleet import SshFleet, SshFleetError, SshHost, missing_tools

_USED_FLEETS = pytest.StashKey[list]()  # fleets a test used, for its failure report


def _remember(request: pytest.FixtureRequest, fleet: SshFleet) -> None:
    request.node.stash.setdefault(_USED_FLEETS, []).append(fleet)


#: Set by .ci/run: a missing tool fails the test instead of skipping it.
REQUIRE_ENV = "EDGECOST_REQUIRE_FLEET"


def require_fleet() -> bool:
    """Whether the SSH hosts and the arm64 root are required (CI) rather than optional."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "no", "false")


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when ``EDGECOST_REQUIRE_FLEET=1`` (CI must not skip these)."""
    if require_fleet():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _skip_without_sshd() -> None:
    problems = missing_tools()
    if problems:
        skip_or_fail("real SSH test hosts need " + ", ".join(problems))


@pytest.fixture
def ssh_fleet(request: pytest.FixtureRequest):
    """Factory: ``ssh_fleet(hosts=1, **SshFleet options) -> SshFleet`` with ``hosts`` started;
    add more with ``fleet.add_host()``. Every fleet made is closed after the test, pass or fail
    (and a failed cleanup fails the test's teardown)."""
    _skip_without_sshd()
    fleets: list[SshFleet] = []

    def make(hosts: int = 1, *, numpy_only: bool = False, **options) -> SshFleet:
        fleet = SshFleet(**options)
        fleets.append(fleet)
        _remember(request, fleet)
        fleet.add_hosts(hosts, numpy_only=numpy_only)
        return fleet

    yield make
    problems = []
    for fleet in fleets:
        try:
            fleet.close()
        except SshFleetError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(scope="session")
def _ssh_fleet_two():
    _skip_without_sshd()
    fleet = SshFleet()
    try:
        fleet.add_hosts(2)
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def ssh_hosts_two(request: pytest.FixtureRequest, _ssh_fleet_two) -> list[SshHost]:
    """Two hosts shared by the whole session (started once). Tests may kill sessions or rotate
    keys (read keys from the host object); a link left down is brought back up afterwards."""
    _remember(request, _ssh_fleet_two)
    yield _ssh_fleet_two.hosts
    for host in _ssh_fleet_two.hosts:
        if host.link_is_down:
            host.link_up()


def pytest_runtest_makereport(item, call):
    """Attach the sshd logs of the test hosts a failed test used to its report."""
    if call.when != "call" or call.excinfo is None:
        return
    for fleet in item.stash.get(_USED_FLEETS, []):
        for host in fleet.hosts if not fleet.closed else ():
            item.add_report_section("call", f"sshd log {host.name} ({host.address}:{host.port})", host.log_text(60))
