"""The quiet gate: a sentinel network timed before each campaign item, waiting out contention.

Contention here is real: a throttler stops and continues the agent's processes every 1 ms
(SIGSTOP/SIGCONT), stretching every run as a lost vCPU stretches a 2-thread run (a neighbour
that merely time-slices the core leaves the fastest run alone); the gate must see it, wait it
out, and let items through once it ends.  The bookkeeping of long contention (the
reset to a new normal) is checked on scripted sentinel times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from edgecost.campaign import CampaignSettings, run_campaign
from edgecost.bench import BenchSettings
from edgecost.devices import local_device
from edgecost.errors import AgentError
from edgecost.quiet_gate import RESET_AFTER, QuietGate
from edgecost.records import Target
from edgecost.store import Store
from edgecost.transport import LocalSession

T = Target("local", "onnxruntime", 1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class Throttler:
    """Stops and continues a process group (the agent and the worker it runs models in) every
    ``period_s`` from a process of its own: each run of the agent takes about twice as long."""

    # Real-time priority, so that the throttler wakes on time even on a busy machine.
    SCRIPT = ("import os, signal, sys, time\n"
              "try:\n    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))\n"
              "except (AttributeError, OSError):\n    os.nice(-15)\n"
              "pg, period = int(sys.argv[1]), float(sys.argv[2])\n"
              "while True:\n"
              "    os.killpg(pg, signal.SIGSTOP); time.sleep(period)\n"
              "    os.killpg(pg, signal.SIGCONT); time.sleep(period)\n")

    def __init__(self, pgid: int, period_s: float = 0.001):
        self.pgid, self.period_s = pgid, period_s
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "Throttler":
        self._proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(self.pgid), str(self.period_s)])
        time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()
        os.killpg(self.pgid, signal.SIGCONT)


def _gate(session, tmp_path, **kw) -> QuietGate:
    return QuietGate(session, T, tmp_path, **kw)


def _reference(gate: QuietGate) -> float:
    for _ in range(3):
        gate.check()
    return gate.report.reference_ms


def test_the_gate_waits_while_the_agent_is_throttled_and_lets_items_through_after(home, tmp_path):
    with LocalSession(local_device()) as s:
        gate = _gate(s, tmp_path, max_wait_s=30.0, poll_s=0.2)
        ref = _reference(gate)
        assert gate.wait() == (True, None)  # quiet (a busy CI machine may make it wait a little first)
        waits = gate.report.waits
        with Throttler(s.pid):
            slow = gate.check()
            assert slow > 1.3 * ref, (slow, ref)  # every run stretched, the fastest too
            box = {}

            def waiting():
                box["out"] = gate.wait()

            waiter = threading.Thread(target=waiting)
            t0 = time.monotonic()
            waiter.start()
            time.sleep(1.5)
            assert waiter.is_alive()  # still waiting while the throttler runs
        waiter.join(timeout=30)
        assert box["out"] == (True, None)  # the throttler stopped: quiet again, the item goes
        assert gate.report.waits == waits + 1 and gate.report.contended_items == 0
        assert gate.report.waited_s >= 1.0 and time.monotonic() - t0 >= 1.5
        assert gate.report.reference_ms <= ref  # the throttled runs never became the reference


def test_the_wait_ends_after_the_longest_wait_on_a_stop_request_or_at_the_deadline(home, tmp_path):
    with LocalSession(local_device()) as s:
        gate = _gate(s, tmp_path, max_wait_s=1.0, poll_s=0.2)
        _reference(gate)
        with Throttler(s.pid):
            t0 = time.monotonic()
            quiet, message = gate.wait()  # measured anyway, and counted as contended
            assert not quiet and message is None and time.monotonic() - t0 < 10
            assert gate.report.contended_items == 1 and gate.report.waits == 1
            gate.max_wait_s = 60.0
            stop = threading.Event()
            stop.set()
            assert gate.wait(stop)[0] is False
            assert gate.wait(deadline=time.monotonic() + 0.5)[0] is False
            assert time.monotonic() - t0 < 20


def test_a_campaign_with_the_gate_reports_what_it_did(home):
    fast = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=2.0, profile_runs=1)
    settings = CampaignSettings(seed=4, families=("conv", "linear"), bench=fast, kernel_share=1.0, quiet_gate=True)
    assert not CampaignSettings().quiet_gate  # opt-in
    events = []
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, Store(), budget_s=300, settings=settings, max_items=3, on_event=events.append)
    assert r.measured == 3
    assert r.gate["checks"] >= 4 and r.gate["reference_ms"] > 0 and r.gate["device_s"] > 0
    assert any("quiet gate: sentinel network at" in e.message for e in events)
    # Old stored settings have no gate: a resumed campaign measures as it did before.
    old = settings.to_dict()
    del old["quiet_gate"]
    assert CampaignSettings.from_dict(old).quiet_gate is False


class ScriptedSession:
    """A device whose sentinel runs take the scripted times in turn (the gate's bookkeeping only)."""

    def __init__(self, times_ms, fail_at=()):
        self.times, self.fail_at, self.calls = list(times_ms), set(fail_at), 0

    def stage_model(self, path):
        return str(path)

    def bench(self, path, **args):
        self.calls += 1
        if self.calls in self.fail_at:
            raise AgentError("the runtime crashed")
        t = self.times.pop(0)
        return {"stats": {"min_ms": t, "median_ms": t}, "total_secs": 0.01}


def _scripted_gate(times, tmp_path, **kw) -> tuple[QuietGate, ScriptedSession]:
    session = ScriptedSession(times, kw.pop("fail_at", ()))
    clock = [0.0]

    def sleep(s):
        clock[0] += s

    gate = QuietGate(session, T, tmp_path, sleep=sleep, clock=lambda: clock[0], **kw)  # takes the first time
    return gate, session


def test_after_several_timed_out_items_the_gate_takes_the_slower_device_as_its_new_normal(tmp_path):
    # Quiet at 2.0 ms, then slower for good at 3.0 ms: each wait times out after 2 polls ...
    slow = [3.0] * 100
    gate, _ = _scripted_gate([2.0] + slow, tmp_path, max_wait_s=2.0, poll_s=1.0)
    messages = [gate.wait() for _ in range(RESET_AFTER)]
    assert [q for q, _ in messages] == [False] * RESET_AFTER
    assert messages[-1][1] and "1.50x slower" in messages[-1][1] and gate.report.resets == 1
    # ... then 3.0 ms is the reference and items pass without waiting.
    waits = gate.report.waits
    assert gate.wait() == (True, None) and gate.report.waits == waits
    assert gate.report.reference_ms == 3.0 and gate.report.contended_items == RESET_AFTER


def test_a_faster_quiet_spell_lowers_the_reference_and_a_failing_sentinel_lets_items_through(tmp_path):
    # A campaign that starts contended (3 ms) learns the quiet figure (2 ms) when it comes.
    gate, session = _scripted_gate([3.0, 2.0, 3.0, 2.1], tmp_path, fail_at=(5,), max_wait_s=10.0, poll_s=1.0)
    assert gate.wait() == (True, None) and gate.report.reference_ms == 2.0
    assert gate.wait() == (True, None) and gate.report.waits == 1  # 3.0 waited, 2.1 passed
    quiet, message = gate.wait()
    assert quiet and "sentinel failed" in message and "without the gate" in message
    assert gate.wait() == (True, None) and session.calls == 5  # said once; the sentinel is not run again
