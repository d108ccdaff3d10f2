"""Waiting for a quiet device: a small sentinel network timed before each campaign item.

A shared machine does not stay quiet.  On this project's 2-vCPU VM the second vCPU comes
and goes in spells of seconds to a minute: a fixed network at 2 threads runs in 3.8 ms for a while, then
in 6.3 ms (the second thread has nowhere to run), then in 3.8 ms again.  A measurement taken
in a slow spell is wrong by the spell's factor, and a profile fitted on a mix of spells is
wrong everywhere: the 2026-12-05 ORT 2-thread campaign, contended from its second minute,
landed 72.8 % of held-out families within ±10 % against 89.3 % at 1 thread.

The gate times a sentinel (a fixed small network, in the target's runtime and threads)
for a fifth of a second before each item and compares its median run with the lowest
median the sentinel has had in this campaign.  More than ``tolerance`` slower: the device
is contended, so wait ``poll_s`` and time it again, until it is quiet or ``max_wait_s`` has
passed (then the item is measured anyway and counted as measured while contended).  The fastest run of an item
that starts in a quiet spell is a quiet figure even if a slow spell begins during it, since
a model's label is its fastest run (``edgecost.predictor.labels``).

If the gate times out on ``RESET_AFTER`` items in a row, the device has changed for good
(another frequency, another tenant that stays): the gate takes the lowest of the sentinel's
recent medians as the new reference and says so, rather than wait on every item from then on.
A campaign that starts inside a slow spell takes that spell as its reference until the
first quiet spell replaces it; the noise watch (``edgecost.campaign``) still speaks then.

Campaigns run without it unless asked (``CampaignSettings.quiet_gate``, ``edgecost profile
--quiet-gate``): on this VM on 2026-12-06 the spells had shrunk to a few seconds, the gate
(then comparing the fastest of eight runs over 0.05 s) waited 14.8 of 20 campaign minutes, and
second visits agreed no better than without it (62 % within ±10 %).  In those spells a real
network ran 1.8x its quiet time while the sentinel's fastest run grew only 1.25-1.3x, near the
tolerance.  Measured right after, over 90 s (62 rounds): the sentinel's fastest run over
0.05 s did not predict the example network's slowdown in the next second at all (r = 0.00),
its median over 0.2 s did (r = 0.70).  A fastest run is the right *label* for an item (the
device's quiet speed, reached in any quiet moment of the item) and the wrong *signal* for the
gate, which must tell whether the next second will be quiet; hence the median.

With the median, on another host (an Intel VM, 2026-12-06, two 15-minute ORT 2-thread campaigns
back to back): second visits agreed within ±10 % for 89.3 % of networks by fastest runs (±5 %:
72.8 %) against 81.5 % (59.1 %) without the gate, and by medians 95.1 % against 85.8 %.  The
price: it waited 9.2 of the 15 minutes, and measured 156 models against 528, so the random
split of that short campaign scored lower (75.4 % within ±10 % against 80.3 %).  It stays
opt-in: it buys cleaner labels with models, which pays in longer campaigns, not in 15 minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .bench import BenchSettings, bench_args
from .errors import AgentError, ConnectionLostError
from .records import Target

#: The sentinel: a small ResNet (dense 3x3 convolutions, the kernels a lost core slows most; about
#: 0.2 GFLOP, 4 ms at 1 thread here), the same network in every campaign and on every device.
SENTINEL_PARAMS = {"block": "basic", "num_classes": 1000, "stages": [[32, 1], [64, 1], [128, 1], [256, 1]],
                   "stem": "imagenet", "stem_width": 32}
SENTINEL_SIDE = 128
SENTINEL_SEED = 20261206
#: A check: the sentinel run for at least 0.2 s (a few dozen runs); its median run is what the gate compares.
GATE_BENCH = BenchSettings(warmup_runs=2, warmup_min_secs=0.02, num_runs=8, min_secs=0.2, max_secs=5.0)
#: How much slower than its lowest median the sentinel's median may be on a quiet device.  A
#: network's median over 2-s windows held within 7 % here over a quiet minute at 2 threads.
DEFAULT_TOLERANCE = 0.10
DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_POLL_S = 1.0
#: Items in a row that waited ``max_wait_s`` in vain before the gate takes a new reference.
RESET_AFTER = 3


@dataclass
class GateReport:
    """What the gate did over one campaign run."""

    checks: int = 0
    waits: int = 0  # items that had to wait for a quiet device
    waited_s: float = 0.0  # wall seconds spent waiting (checks and pauses)
    contended_items: int = 0  # items measured after max_wait_s without a quiet check
    resets: int = 0  # times the reference was replaced (the device changed for good)
    device_s: float = 0.0  # seconds the device spent timing the sentinel
    reference_ms: float | None = None  # the sentinel's lowest median run, the quiet reference
    last_ms: list[float] = field(default_factory=list)  # the sentinel's recent checks

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("last_ms")
        return d


def sentinel_spec(batch: int = 1):
    """The sentinel network's zoo spec (the same on every call)."""
    from .zoo.spec import ModelSpec

    return ModelSpec("resnet", SENTINEL_PARAMS, (batch, 3, SENTINEL_SIDE, SENTINEL_SIDE), SENTINEL_SEED)


class QuietGate:
    """Times a sentinel before each item and waits while the device is slower than its quiet self.

    Built, it has exported and staged the sentinel (under ``workdir``) and timed it once for its
    first reference.  ``sleep`` and ``clock`` are injectable for tests.
    """

    def __init__(self, session, target: Target, workdir: Path, *,
                 tolerance: float = DEFAULT_TOLERANCE, max_wait_s: float = DEFAULT_MAX_WAIT_S,
                 poll_s: float = DEFAULT_POLL_S, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.session, self.target = session, target
        self.tolerance, self.max_wait_s, self.poll_s = tolerance, max_wait_s, poll_s
        self._sleep, self._clock = sleep, clock
        self.report = GateReport()
        self._timeouts_in_row = 0
        self.broken = False  # the sentinel failed once: the gate lets every item through
        from .campaign import _prepare  # the sentinel is exported as the campaign exports its items

        path, graph = _prepare(sentinel_spec(target.batch), target.runtime, workdir / "sentinel")
        self._args = bench_args(target, graph, GATE_BENCH)
        self._remote = session.stage_model(path)
        self.check()

    def check(self) -> float:
        """Time the sentinel once; its median run (ms).  Lowers the reference if it ran faster."""
        res = self.session.bench(self._remote, **self._args)
        median = float(res["stats"]["median_ms"])
        self.report.checks += 1
        self.report.device_s += float(res.get("total_secs") or 0.0)
        self.report.last_ms = (self.report.last_ms + [median])[-10:]
        if self.report.reference_ms is None or median < self.report.reference_ms:
            self.report.reference_ms = median
        return median

    def quiet(self, median_ms: float) -> bool:
        ref = self.report.reference_ms
        return ref is None or median_ms <= ref * (1.0 + self.tolerance)

    def wait(self, stop=None, deadline: float | None = None) -> tuple[bool, str | None]:
        """Block until a check finds the device quiet, ``max_wait_s`` passes, ``stop`` is set or
        the clock reaches ``deadline``.  Returns (quiet, a message worth showing or None).
        A sentinel that fails to run is no reason to stop measuring: the gate then lets this
        item and every later one through (a lost connection still propagates)."""
        if self.broken:
            return True, None
        t0 = self._clock()
        waited = False
        message = None
        while True:
            try:
                median = self.check()
            except ConnectionLostError:
                raise
            except AgentError as exc:
                self.broken = True
                return True, f"the quiet gate's sentinel failed ({exc}); measuring without the gate from now on"
            if self.quiet(median):
                self._timeouts_in_row = 0
                break
            now = self._clock()
            out_of_time = (now - t0 >= self.max_wait_s or (stop is not None and stop.is_set())
                           or (deadline is not None and now + self.poll_s >= deadline))
            if out_of_time:
                self.report.contended_items += 1
                self._timeouts_in_row += 1
                if self._timeouts_in_row >= RESET_AFTER:
                    old = self.report.reference_ms
                    self.report.reference_ms = float(min(self.report.last_ms[-3:]))
                    self.report.resets += 1
                    self._timeouts_in_row = 0
                    message = (f"the device stayed {self.report.reference_ms / old:.2f}x slower than its quietest "
                               f"({old:.2f} ms a sentinel run) for {RESET_AFTER} items: taking that as its new normal")
                if waited:
                    self.report.waited_s += self._clock() - t0
                return False, message
            if not waited:
                waited = True
                self.report.waits += 1
            self._sleep(self.poll_s)
        if waited:
            self.report.waited_s += self._clock() - t0
        return True, message
