"""A profiling campaign: generated models → converted → measured on a target → stored.

The campaign draws models from a seeded, indexable stream (item ``i`` is a pure function
of the campaign seed and ``i``), so a campaign that was interrupted — Ctrl-C, a dropped
link, a killed process — resumes where it stopped: items already stored are skipped, and
the store's uniqueness constraint on (campaign, item) makes a duplicate impossible.

A model that fails on the device (crash, out of memory, unsupported op) is stored as a
failed item and the campaign goes on.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import paths
from .errors import AgentError, ConnectionLostError, ConversionError, UsageError
from .bench import CAMPAIGN_BENCH, BenchSettings, bench_args, measurement_from_result
from .quiet_gate import QuietGate
from .records import Target
from .store import Store
from .tflite_profile import OpTimes

log = logging.getLogger(__name__)

#: Artifacts larger than this are not kept (a zoo model can be rebuilt from its stored spec).
KEEP_ARTIFACT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class CampaignSettings:
    """What a campaign measures. Stored with the campaign; a resume uses the stored settings."""

    seed: int = 0
    families: tuple[str, ...] = ()  # empty: every family in the zoo
    kernel_share: float = 0.3  # share of single-kernel models among the items
    max_flops: int | None = None  # None: each family's default cap (and some networks up to 6x it)
    large_share: float = 0.15  # share of network items allowed 6x the default FLOP cap
    bench: BenchSettings = CAMPAIGN_BENCH
    strategy: str = "random"  # "random" | "adaptive"
    op_profile: bool = True  # LiteRT: time each distinct operator as a single-op model (per-kernel truth)
    # Share of measuring turns spent timing an already-measured model again, minutes later
    # (see ``Revisits``); 0 turns revisits off.
    revisit_share: float = 0.5
    revisit_min_gap_s: float = 60.0  # a model is timed again no sooner than this after its last visit
    # A model whose two fastest visits agree within this (fastest runs, %) is settled: no more
    # visits; 0 revisits every model alike (the campaigns before 2026-11-28 did).
    revisit_settle_pct: float = 3.0
    revisit_max_visits: int = 4  # never more visits than this, settled or not
    # Time a sentinel network before each item and wait while the device runs it slower than its
    # quiet self (``edgecost.quiet_gate``).  Off by default: on this project's VM, whose second vCPU
    # comes and goes in spells of a few seconds, it did not make the measurements agree better.
    quiet_gate: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.revisit_share < 1.0:
            raise UsageError(f"revisit share {self.revisit_share} is outside [0, 1)",
                             "pass a share such as 0.3 (0 turns revisits off)")
        if self.revisit_settle_pct < 0 or self.revisit_max_visits < 2:
            raise UsageError(f"revisit settle tolerance {self.revisit_settle_pct} % / at most "
                             f"{self.revisit_max_visits} visits is not usable",
                             "pass a tolerance >= 0 and at least 2 visits")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["families"] = list(self.families)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CampaignSettings":
        d = dict(d)
        d["families"] = tuple(d.get("families", ()))
        d["bench"] = BenchSettings(**d.get("bench", {}))
        d.setdefault("revisit_share", 0.0)  # campaigns stored before revisits existed had none
        d.setdefault("revisit_settle_pct", 0.0)  # ... and before settling, every model was revisited alike
        d.setdefault("quiet_gate", False)  # ... nor a quiet gate, before 2026-12-06
        return cls(**d)


@dataclass
class CampaignEvent:
    """Progress reported to a UI after each item."""

    kind: str  # "measured" | "revisited" | "failed" | "skipped" | "info" | "warning"
    item: str = ""
    family: str = ""
    median_ms: float | None = None
    message: str = ""
    done_ok: int = 0
    done_failed: int = 0
    elapsed_s: float = 0.0
    budget_s: float = 0.0

    @classmethod
    def progress(cls, kind: str, result: "CampaignResult", start: float, budget_s: float,
                 **fields: Any) -> "CampaignEvent":
        """An item's event, with the campaign's running counts and time."""
        return cls(kind, done_ok=result.measured, done_failed=result.failed,
                   elapsed_s=time.monotonic() - start, budget_s=budget_s, **fields)


@dataclass
class CampaignResult:
    campaign_id: int
    target: Target
    measured: int = 0  # new items measured (revisits are counted apart)
    failed: int = 0
    revisited: int = 0  # visits of already-measured models (``CampaignSettings.revisit_share``)
    skipped_already_done: int = 0
    elapsed_s: float = 0.0
    device_seconds: float = 0.0
    stopped_because: str = ""
    warnings: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None  # what the quiet gate did (``GateReport``), if it ran

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target.key
        return d


class ItemStream:
    """Item ``i`` of a campaign: a zoo spec that depends only on (seed, i)."""

    def __init__(self, settings: CampaignSettings, batch: int):
        from . import zoo  # torch lives behind the zoo; profiling needs it, predicting does not

        self._zoo = zoo
        names = list(settings.families) or sorted(zoo.FAMILIES)
        unknown = [n for n in names if n not in zoo.FAMILIES]
        if unknown:
            raise UsageError(f"unknown model families: {', '.join(unknown)}",
                             f"choose from: {', '.join(sorted(zoo.FAMILIES))}")
        self.networks = [n for n in names if zoo.FAMILIES[n].kind == "network"]
        self.kernels = [n for n in names if zoo.FAMILIES[n].kind == "kernel"]
        self.settings = settings
        self.batch = batch
        self.weights: dict[str, float] | None = None  # adaptive: where the predictor is least sure

    def family_of(self, i: int) -> str:
        rng = np.random.default_rng([self.settings.seed, i, 1])
        pick_kernel = self.kernels and (not self.networks or rng.random() < self.settings.kernel_share)
        pool = self.kernels if pick_kernel else self.networks
        if self.weights:
            w = np.array([self.weights.get(f, 0.0) for f in pool], float)
            if w.sum() > 0:
                return pool[int(rng.choice(len(pool), p=w / w.sum()))]
        # Round-robin within the pool keeps every family represented even in short campaigns.
        order = np.random.default_rng([self.settings.seed, 7]).permutation(len(pool))
        return pool[int(order[i % len(pool)])]

    def spec(self, i: int):
        family = self.family_of(i)
        fam = self._zoo.FAMILIES[family]
        rng = np.random.default_rng([self.settings.seed, i, 2])
        cap = self.settings.max_flops
        if cap is None and fam.kind == "network" and rng.random() < self.settings.large_share:
            # Some large networks, so that real models of several GFLOPs are inside the training range.
            cap = int(fam.default_max_flops * 6)
        return fam.sample(rng, batch=self.batch, max_flops=cap)

    def specs_from(self, start: int) -> Iterator[tuple[int, Any]]:
        i = start
        while True:
            yield i, self.spec(i)
            i += 1


class AdaptiveWeights:
    """Adaptive sampling (after nn-Meter): measure next where the predictor is least sure.

    After ``warmup`` measured models, and again each time that count has doubled, a quick
    predictor is fitted on everything stored for the target; its out-of-fold error per family sets
    how often each family is drawn next (half uniform, half in proportion to the error
    weighted by how often the family was already measured), so measuring time goes where
    the profile is still wrong.
    """

    def __init__(self, store: Store, target: Target, stream: ItemStream, *, warmup: int = 60,
                 explore: float = 0.5):
        self.store, self.target, self.stream = store, target, stream
        self.warmup, self.explore = warmup, explore
        self.next_fit_at = warmup
        self.history: list[dict[str, Any]] = []

    def maybe_refit(self, n_measured: int) -> dict[str, float] | None:
        if n_measured < self.next_fit_at:
            return None
        self.next_fit_at = 2 * n_measured
        from .predictor.dataset import build_dataset
        from .predictor.model import LEAF_SIZE_FALLBACK, LatencyPredictor

        ds = build_dataset(self.store, self.target)
        if len(ds.models) < 20:
            return None
        # Labels by the revisit rule (build_dataset's ``auto``), one leaf size: not the default fit's
        # choices among three statistics and three sizes, since this fit steers sampling, often, mid-campaign.
        fast = LatencyPredictor(n_estimators=120, folds=3, model_correction=False,
                                min_child_samples=LEAF_SIZE_FALLBACK)
        fast.fit(ds.models)
        y = np.array([m.latency_ms for m in ds.models])
        err = np.abs(np.log(y / fast.oof_predictions_ms_))
        fams = np.array([m.family for m in ds.models])
        names = self.stream.networks + self.stream.kernels
        mean_err = {f: float(err[fams == f].mean()) if np.any(fams == f) else float(err.max()) for f in names}
        weights = {}
        for pool in (self.stream.networks, self.stream.kernels):
            if not pool:
                continue
            total = sum(mean_err[f] for f in pool) or 1.0
            for f in pool:
                weights[f] = self.explore / len(pool) + (1 - self.explore) * mean_err[f] / total
        self.stream.weights = weights
        self.history.append({"n_measured": n_measured, "mean_abs_log_error": float(err.mean()),
                             "within_10pct": float(np.mean(err <= np.log(1.1))), "weights": weights})
        return weights


#: What separates a measured item from its revisit number in a stored campaign item key.
REVISIT_MARK = "#r"


def revisit_base(item: str) -> str:
    """The campaign item a stored item key measures (``"12:conv-ab12#r1"`` -> ``"12:conv-ab12"``)."""
    return item.split(REVISIT_MARK, 1)[0]


#: The noise watch: over the last ``NOISE_WINDOW`` networks timed a second time in this run, if
#: fewer than ``NOISE_MIN_AGREEING`` of them have a second visit within ``NOISE_AGREE`` of the first
#: (fastest runs), the campaign warns that the device is contended.  On this project's 2-vCPU VM a
#: quiet campaign agrees for 92-98 % of networks and a contended one for 62 % (BENCHMARKS.md),
#: and a profile fitted on the contended one predicted 69 % of realistic models within ±10 %
#: against 92 % for one fitted on an earlier, quieter campaign.
NOISE_WINDOW = 20
NOISE_AGREE = 0.10
NOISE_MIN_AGREEING = 0.80


def fastest_pair_gap(fastest_ms: list[float]) -> float | None:
    """How far apart (relative) the two fastest of a model's visits are, None before two visits.

    A model is settled when this is within ``CampaignSettings.revisit_settle_pct``."""
    pair = sorted(fastest_ms)[:2]
    return pair[1] / pair[0] - 1.0 if len(pair) == 2 else None


class Revisits:
    """Times already-measured models again, minutes after their first visit.

    On a shared or thermally limited machine a model's latency drifts in states that last
    tens of seconds (a neighbour's load, a throttled clock): timing one model for longer
    does not average that out, timing it again later does.  A model's label combines its
    visits (``edgecost.predictor.labels``: the fastest run over them by default), so a
    campaign that spends ``share`` of its turns on revisits trades some models for cleaner
    labels.  The model least visited, and of those the one visited longest ago, goes next;
    never sooner than ``min_gap_s`` after its last visit.

    Revisits go where they pay: a model whose two fastest visits agree within ``settle_pct``
    (their fastest runs) is *settled* and not timed again, so the turns go to the models whose
    visits disagree (one of them ran in a slow spell, and the label is only as good as the
    fastest visit) or, when every visited model is settled, to new models.  No model gets more
    than ``max_visits``.  Revisits reuse the kept artifact, so they cost device time only.
    """

    def __init__(self, store: Store, campaign_id: int, share: float, min_gap_s: float,
                 settle_pct: float = 0.0, max_visits: int = 1_000_000):
        self.ratio = share / (1.0 - share)  # revisits per new item
        self.min_gap_s = min_gap_s
        self.settle = settle_pct / 100.0
        self.max_visits = max_visits
        # base item -> [model hash, visits, monotonic time of the last visit, fastest runs (ms) of the visits]
        self.visits: dict[str, list[Any]] = {}
        self.revisits_done = 0
        self.new_done = 0
        # |second visit / first - 1| of the networks timed a second time in this run (the noise watch)
        self.second_visit_gaps: collections.deque[float] = collections.deque(maxlen=NOISE_WINDOW)
        self.noise_warned = False  # the watch warns once a run
        for m in store.measurements(campaign_id=campaign_id, status="ok", with_profiles=False):
            self.note(m.campaign_item or "", m.model_hash, at=float("-inf"), fastest_ms=m.measurement.stats.min_ms)
        for m in store.measurements(campaign_id=campaign_id, status="failed", with_profiles=False):
            self.count(m.campaign_item or "")
            if REVISIT_MARK in (m.campaign_item or ""):
                self.drop(revisit_base(m.campaign_item))  # as after a failed revisit in this run

    def note(self, item: str, model_hash: str, at: float | None = None, fastest_ms: float | None = None) -> None:
        """Record a successful visit of ``item`` (a new item or a revisit key), with its fastest run."""
        base = revisit_base(item)
        entry = self.visits.setdefault(base, [model_hash, 0, float("-inf"), []])
        entry[1] += 1
        entry[2] = time.monotonic() if at is None else at
        if fastest_ms is not None and fastest_ms > 0:
            entry[3].append(float(fastest_ms))
            if len(entry[3]) == 2 and entry[2] != float("-inf"):  # a second visit in this run
                self.second_visit_gaps.append(abs(entry[3][1] / entry[3][0] - 1.0))
        self.count(item)

    def count(self, item: str) -> None:
        """Count a turn spent on ``item``; alone, for a turn that leaves nothing to revisit (it
        failed, or the model's file was not kept)."""
        if REVISIT_MARK in item:
            self.revisits_done += 1
        else:
            self.new_done += 1

    def agreement(self) -> float | None:
        """Share of the last ``NOISE_WINDOW`` second visits within ``NOISE_AGREE`` of their first
        visit; None until that many networks have had a second visit in this run."""
        gaps = self.second_visit_gaps
        if len(gaps) < NOISE_WINDOW:
            return None
        return sum(g <= NOISE_AGREE for g in gaps) / len(gaps)

    def due(self) -> bool:
        return self.revisits_done < self.ratio * self.new_done

    def gap(self, base: str) -> float | None:
        """How far apart the two fastest visits of ``base`` are (relative), None before two visits."""
        return fastest_pair_gap(self.visits[base][3])

    def settled(self, base: str) -> bool:
        """Whether ``base`` needs no more visits: its two fastest visits agree, or it has had the most."""
        if self.visits[base][1] >= self.max_visits:
            return True
        g = self.gap(base)
        return self.settle > 0 and g is not None and g <= self.settle

    def pick(self) -> tuple[str, str, str] | None:
        """(revisit item key, base item, model hash) of the next model to time again, or None.

        Only unsettled models with the fewest visits so far are candidates: while those are
        all too recent, the turn goes to a new item, so no model gets a third visit before
        every unsettled model has had a second.  (Ranking by how far apart a model's visits
        are instead was tried on 2026-11-28: on a noisy ORT 2-thread campaign it gave 90
        networks four visits and left 174 with one, and the random split fell to 35 %.)
        """
        open_ = {b: v for b, v in self.visits.items() if not self.settled(b)}
        if not open_:
            return None
        now = time.monotonic()
        fewest = min(v[1] for v in open_.values())
        best = None
        for base, (model_hash, n, last, _) in open_.items():
            if n > fewest or now - last < self.min_gap_s:
                continue
            key = (n, last)
            if best is None or key < best[0]:
                best = (key, base, model_hash)
        if best is None:
            return None
        (n, _), base, model_hash = best
        return f"{base}{REVISIT_MARK}{n}", base, model_hash

    def drop(self, base: str) -> None:
        """Never pick ``base`` again (its file is gone)."""
        self.visits.pop(base, None)


def _prepare(spec, runtime: str, out_dir: Path):
    """Host work for one item: the model file and its graph (no store, no device)."""
    from .graph import read_model

    out_dir.mkdir(parents=True, exist_ok=True)
    path = _export(spec, runtime, out_dir)
    graph = read_model(path)
    return path, replace(graph, source=f"zoo:{spec.family}:{spec.spec_id}")


class _Prefetcher:
    """Prepares the next item on the host (export, graph) while the device measures this one.

    One worker thread, so at most one export runs beside a measurement; each item gets its
    own directory.  Worth it when the device is another machine: a campaign then takes
    max(host, device) time per item instead of their sum.
    """

    def __init__(self, runtime: str, workdir: Path):
        self.runtime, self.workdir = runtime, workdir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecost-prepare")

    def submit(self, index: int, spec) -> Future:
        return self._pool.submit(_prepare, spec, self.runtime, self.workdir / f"item-{index}")

    def close(self) -> None:
        # Waits for an export already running (its files go with the work dir), drops queued ones.
        self._pool.shutdown(wait=True, cancel_futures=True)


def _export(spec, runtime: str, out_dir: Path) -> Path:
    """The zoo model as the runtime's file. The fast TorchScript exporter first, dynamo if it cannot.

    No numeric check here: zoo models are checked in the test suite, and the check would
    run every model once more in torch and once more in a runtime on the host.
    """
    from . import convert

    fmt = {"onnxruntime": "onnx", "tflite": "tflite", "torch": "torch"}[runtime]
    try:
        return convert.export_spec(spec, out_dir, fmt=fmt, exporter="torchscript", check=False)
    except ConversionError:
        if fmt != "onnx":
            raise
        return convert.export_spec(spec, out_dir, fmt=fmt, exporter="dynamo", check=False)


def run_campaign(
    session,
    target: Target,
    store: Store,
    *,
    budget_s: float,
    settings: CampaignSettings | None = None,
    new: bool = False,
    max_items: int | None = None,
    on_event: Callable[[CampaignEvent], None] | None = None,
    stop: threading.Event | None = None,
    prefetch: bool | None = None,
) -> CampaignResult:
    """Measure generated models on ``target`` until ``budget_s`` seconds have passed.

    Resumes the target's latest campaign unless ``new`` is set or none exists.
    ``stop`` (set from another thread, e.g. on Ctrl-C) ends the campaign after the
    current item; everything measured so far is already stored.  ``prefetch`` exports
    the next model on the host while the device measures the current one; by default
    (None) only when the device is another machine (``session.measures_on_host_cpu`` is
    false), because on the host itself the export would compete with the measurement.
    """
    emit = on_event or (lambda e: None)
    start = time.monotonic()
    latest = None if new else store.latest_campaign(target)
    if latest is not None:
        campaign_id = latest["id"]
        settings = CampaignSettings.from_dict(latest["settings"])
        emit(CampaignEvent("info", message=f"resuming campaign {campaign_id} "
                                             f"({latest['measured_ok']} measured so far)"))
    else:
        settings = settings or CampaignSettings()
        campaign_id = store.create_campaign(target, settings.seed, settings.to_dict())
        emit(CampaignEvent("info", message=f"started campaign {campaign_id}"))
    store.set_campaign_status(campaign_id, "running")
    result = CampaignResult(campaign_id=campaign_id, target=target)
    done = store.campaign_items_done(campaign_id)

    facts = session.sysinfo()
    store.put_device_facts(target.device, facts)
    for warning in device_warnings(facts):
        result.warnings.append(warning)
        emit(CampaignEvent("warning", message=warning))

    stream = ItemStream(settings, target.batch)
    op_times = OpTimes.from_store(store, target) if target.runtime == "tflite" and settings.op_profile else None
    adaptive = AdaptiveWeights(store, target, stream) if settings.strategy == "adaptive" else None
    # An adaptive stream depends on what was measured: resume after the last item, not at 0.
    first_new = 1 + max((int(k.split(":", 1)[0]) for k in done), default=-1) if adaptive else 0
    if adaptive is not None:
        adaptive.maybe_refit(store.count_measurements(target))
    workdir = Path(tempfile.mkdtemp(prefix="edgecost-campaign-"))
    artifacts = paths.artifacts_dir()
    artifacts.mkdir(parents=True, exist_ok=True)
    if prefetch is None:
        prefetch = not getattr(session, "measures_on_host_cpu", False)
    prefetcher = _Prefetcher(target.runtime, workdir) if prefetch else None
    revisits = (Revisits(store, campaign_id, settings.revisit_share, settings.revisit_min_gap_s,
                         settings.revisit_settle_pct, settings.revisit_max_visits)
                if settings.revisit_share > 0 else None)
    gate: QuietGate | None = None
    deadline = start + budget_s

    def new_items() -> Iterator[tuple[int, Any, str]]:
        for index, spec in stream.specs_from(first_new):
            item = f"{index}:{spec.spec_id}"
            if item in done:
                result.skipped_already_done += 1
                continue
            yield index, spec, item

    items = new_items()
    ahead: list[tuple[int, Any, str, Future]] = []  # the next item, already being prepared
    status = "paused"
    try:
        if settings.quiet_gate:
            gate = _start_gate(session, target, workdir, result, emit)
        while True:
            if stop is not None and stop.is_set():
                result.stopped_because = "stopped"
                status = "interrupted"
                break
            if time.monotonic() - start >= budget_s:
                result.stopped_because = "budget spent"
                break
            if max_items is not None and result.measured + result.failed >= max_items:
                result.stopped_because = "item limit reached"
                break
            if revisits is not None and revisits.due():
                pick = revisits.pick()
                if pick is not None:
                    _pass_gate(gate, result, emit, stop, deadline)
                    _revisit_item(session, target, store, pick, revisits, settings.bench, campaign_id, result,
                                  emit, start, budget_s)
                    _watch_noise(revisits, result, emit)
                    continue
            if ahead:
                index, spec, item, future = ahead.pop()
            else:
                index, spec, item = next(items)
                future = prefetcher.submit(index, spec) if prefetcher is not None else None
            if prefetcher is not None:
                if max_items is None or result.measured + result.failed + 1 < max_items:
                    following = next(items)
                    ahead.append((*following, prefetcher.submit(following[0], following[1])))
                prepare = future.result
            else:
                prepare = lambda spec=spec, index=index: _prepare(spec, target.runtime, workdir / f"item-{index}")
            _pass_gate(gate, result, emit, stop, deadline)
            _measure_item(session, target, store, spec, item, prepare, settings.bench, workdir, artifacts,
                          campaign_id, result, emit, start, budget_s, op_times, revisits)
            if adaptive is not None and adaptive.maybe_refit(store.count_measurements(target)):
                top = sorted(stream.weights.items(), key=lambda kv: -kv[1])[:3]
                emit(CampaignEvent("info", message="adaptive sampling: most weight on "
                                   + ", ".join(f"{f} {w:.2f}" for f, w in top)))
    except KeyboardInterrupt:
        status = "interrupted"
        result.stopped_because = "interrupted"
        raise
    finally:
        if prefetcher is not None:
            prefetcher.close()
        store.set_campaign_status(campaign_id, status)
        result.elapsed_s = time.monotonic() - start
        if gate is not None:
            result.gate = gate.report.to_dict()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _start_gate(session, target, workdir: Path, result: CampaignResult,
                emit: Callable[[CampaignEvent], None]) -> QuietGate | None:
    """The campaign's quiet gate with its first reference check, or None if the sentinel cannot run."""
    try:
        gate = QuietGate(session, target, workdir)
    except ConnectionLostError:
        raise
    except (AgentError, ConversionError) as exc:
        message = f"no quiet gate: its sentinel network did not run ({exc}); measuring without it"
        result.warnings.append(message)
        emit(CampaignEvent("warning", message=message))
        return None
    emit(CampaignEvent("info", message=f"quiet gate: sentinel network at {gate.report.reference_ms:.2f} ms"))
    return gate


def _pass_gate(gate: QuietGate | None, result: CampaignResult, emit: Callable[[CampaignEvent], None],
               stop: threading.Event | None, deadline: float) -> None:
    """Wait for a quiet device before an item; say so the first time the gate has to wait."""
    if gate is None:
        return
    waits = gate.report.waits
    quiet, message = gate.wait(stop, deadline)
    if gate.report.waits > waits and waits == 0:
        first = (f"the device is contended (the sentinel network ran in {max(gate.report.last_ms):.2f} ms against"
                 f" {gate.report.reference_ms:.2f} ms quiet): from now on each item waits up to"
                 f" {gate.max_wait_s:.0f} s for a quiet spell")
        emit(CampaignEvent("warning", message=first))
    if message:
        result.warnings.append(message)
        emit(CampaignEvent("warning", message=message))


def _measure_item(session, target, store, spec, item, prepare: Callable[[], tuple[Path, Any]], bench: BenchSettings,
                  workdir, artifacts, campaign_id, result, emit, start, budget_s,
                  op_times: OpTimes | None = None, revisits: Revisits | None = None) -> None:
    t0 = time.monotonic()
    try:
        path, graph = prepare()
    except ConversionError as exc:
        # A generator/converter problem on the host, not the device: record and go on.
        log.warning("item %s: conversion failed: %s", item, exc)
        emit(CampaignEvent.progress("failed", result, start, budget_s, item=item, family=spec.family,
                                    message=f"conversion: {exc}"))
        return
    kept = None
    if path.stat().st_size <= KEEP_ARTIFACT_MAX_BYTES:
        dest = artifacts / f"{graph.content_hash}{path.suffix}"
        if not dest.exists():
            shutil.copyfile(path, dest)
        kept = str(dest)
    store.put_model(graph, family=spec.family, spec=spec.to_dict(), artifact_path=kept)
    node_profile: tuple[dict[str, Any], ...] = ()
    slices_s = 0.0
    try:
        remote = session.stage_model(path)
        res = session.bench(remote, **bench_args(target, graph, bench))
        if op_times is not None:  # the model's per-operator times, while its file is at hand
            node_profile, slices_s = op_times.measure(session, target, path, graph, workdir)
    except ConnectionLostError:
        raise  # the link is gone, not the model's fault: the caller reconnects and resumes
    except AgentError as exc:
        kind = getattr(exc, "kind", "agent_error")
        store.add_failure(graph.content_hash, target, kind, str(exc), campaign_id=campaign_id,
                          campaign_item=item, seconds_spent=time.monotonic() - t0)
        result.failed += 1
        if revisits is not None:
            revisits.count(item)
        emit(CampaignEvent.progress("failed", result, start, budget_s, item=item, family=spec.family,
                                    message=str(exc)))
        return
    finally:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the item's own directory, now empty
    m = measurement_from_result(res, graph.content_hash, target)
    device_s = float(res.get("total_secs") or 0.0) + slices_s
    if op_times is not None:
        m = replace(m, node_profile=node_profile)
    spent = time.monotonic() - t0
    if store.add_measurement(m, campaign_id=campaign_id, campaign_item=item,
                             seconds_spent=device_s or spent) is not None:
        result.measured += 1
        result.device_seconds += device_s
        if revisits is not None and kept is not None:
            revisits.note(item, graph.content_hash, fastest_ms=m.stats.min_ms)
        elif revisits is not None:
            revisits.count(item)  # a new item, but its file was not kept: nothing to revisit
    emit(CampaignEvent.progress("measured", result, start, budget_s, item=item, family=spec.family,
                                median_ms=m.stats.median_ms))


def _watch_noise(revisits: Revisits, result: CampaignResult, emit: Callable[[CampaignEvent], None]) -> None:
    """Warn once a run when second visits stop agreeing with first ones: the device is contended."""
    share = revisits.agreement()
    if share is None or share >= NOISE_MIN_AGREEING or revisits.noise_warned:
        return
    revisits.noise_warned = True
    message = (f"the device looks contended: only {share:.0%} of the last {NOISE_WINDOW} networks timed twice"
               f" agree within ±{NOISE_AGREE:.0%} with their first visit (a quiet device: over 90 %);"
               " stop other load on it, or expect a less accurate profile")
    result.warnings.append(message)
    emit(CampaignEvent("warning", message=message))


def _revisit_item(session, target, store, pick: tuple[str, str, str], revisits: Revisits, bench: BenchSettings,
                  campaign_id, result, emit, start, budget_s) -> None:
    """Time a kept model again and store it as one more visit of its campaign item."""
    item, base, model_hash = pick
    stored = store.model(model_hash)
    path = Path(stored.artifact_path) if stored is not None and stored.artifact_path else None
    if path is None or not path.is_file():
        revisits.drop(base)  # the artifact was removed since: nothing to time again
        return
    t0 = time.monotonic()
    graph = store.model_graph(model_hash)
    family = stored.family or ""
    try:
        res = session.bench(session.stage_model(path), **bench_args(target, graph, bench))
    except ConnectionLostError:
        raise
    except AgentError as exc:
        store.add_failure(model_hash, target, getattr(exc, "kind", "agent_error"), str(exc), campaign_id=campaign_id,
                          campaign_item=item, seconds_spent=time.monotonic() - t0)
        revisits.count(item)
        revisits.drop(base)  # it failed once on a second visit: do not spend more turns on it
        emit(CampaignEvent.progress("failed", result, start, budget_s, item=item, family=family,
                                    message=f"revisit: {exc}"))
        return
    m = measurement_from_result(res, model_hash, target)
    device_s = float(res.get("total_secs") or 0.0)
    if store.add_measurement(m, campaign_id=campaign_id, campaign_item=item,
                             seconds_spent=device_s or time.monotonic() - t0) is not None:
        result.revisited += 1
        result.device_seconds += device_s
    revisits.note(item, model_hash, fastest_ms=m.stats.min_ms)
    emit(CampaignEvent.progress("revisited", result, start, budget_s, item=item, family=family,
                                median_ms=m.stats.median_ms))


def device_warnings(facts: dict[str, Any]) -> list[str]:
    """Conditions that spoil measurements: a non-performance governor, throttling."""
    out = []
    cpu = facts.get("cpu") or {}
    governors = cpu.get("governors") or ([cpu["governor"]] if cpu.get("governor") else [])
    bad = sorted({g for g in governors if g and g != "performance"})
    if bad:
        out.append(
            f"CPU governor is {', '.join(bad)}, not 'performance': timings will vary with load; on the device run "
            "`echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor`"
        )
    pi = facts.get("raspberry_pi") or {}
    if pi.get("throttled") not in (None, "0x0", "0x00000", 0):
        flags = ", ".join(pi.get("throttled_flags") or []) or pi["throttled"]
        out.append(f"the device reports throttling or under-voltage ({flags}): cool it or use a stronger power supply")
    temp = facts.get("max_temp_c")
    if isinstance(temp, (int, float)) and temp >= 80:
        out.append(f"the device is hot ({temp:.0f} °C) and may throttle: let it cool or add cooling")
    return out
