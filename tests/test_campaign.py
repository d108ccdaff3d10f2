"""Profiling campaigns with the real agent: stored, resumable, no duplicates, failures recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from edgecost.campaign import CampaignSettings, run_campaign
from edgecost.devices import local_device
from edgecost.bench import BenchSettings
from edgecost.records import Target
from edgecost.store import Store
from edgecost.transport import LocalSession

FAST = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=2.0, profile_runs=2)
SETTINGS = CampaignSettings(seed=11, families=("conv", "linear", "pool", "elementwise", "nb201"), bench=FAST,
                            kernel_share=0.7)
T = Target("local", "onnxruntime", 1)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOST_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _items(store: Store, campaign_id: int) -> list[str]:
    return [m.campaign_item for m in store.measurements(status=None, campaign_id=campaign_id)]


def test_campaign_stores_and_resumes_without_duplicates(home):
    store = Store()
    with LocalSession(local_device()) as s:
        r1 = run_campaign(s, T, store, budget_s=120, settings=SETTINGS, max_items=4)
    assert r1.measured == 4 and r1.stopped_because == "item limit reached"
    rows = store.measurements(T)
    assert len(rows) == 4 and all(r.measurement.node_profile for r in rows)
    assert store.device_facts("local")["cpu"]["logical_cores"] >= 1
    with LocalSession(local_device()) as s:
        r2 = run_campaign(s, T, store, budget_s=120, max_items=3)  # resumes campaign 1 with its stored settings
    assert r2.campaign_id == r1.campaign_id and r2.skipped_already_done == 4 and r2.measured == 3
    items = _items(store, r1.campaign_id)
    # The resume also times the first run's models again (revisits, CampaignSettings.revisit_share).
    assert len(items) == len(set(items)) and len([i for i in items if "#r" not in i]) == 7
    with LocalSession(local_device()) as s:
        r3 = run_campaign(s, T, store, budget_s=120, settings=SETTINGS, new=True, max_items=1)
    assert r3.campaign_id != r1.campaign_id
    families = {store.model(r.model_hash).family for r in store.measurements(T)}
    assert families <= set(SETTINGS.families)


def test_stop_event_interrupts_cleanly(home):
    store = Store()
    stop = threading.Event()

    def on_event(ev):
        if ev.kind == "measured" and ev.done_ok >= 2:
            stop.set()

    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=SETTINGS, on_event=on_event, stop=stop)
    assert r.measured == 2 and r.stopped_because == "stopped"
    assert store.campaign(r.campaign_id)["status"] == "interrupted"


class CrashingSession(LocalSession):
    """The agent's worker really dies from SIGSEGV on the benches ``crash_on(n, path)`` picks
    (the agent's test hook; ``n`` counts this session's benches from 1)."""

    def __init__(self, *args, crash_on, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_on, self.benches = crash_on, 0

    def bench(self, device_model_path, **args):
        self.benches += 1
        if self.crash_on(self.benches, str(device_model_path)):
            args["test_hook"] = "segv"
        return super().bench(device_model_path, **args)


def test_a_crashing_model_is_recorded_and_the_campaign_goes_on(home):
    store = Store()
    env = dict(os.environ, EDGECOST_AGENT_TEST_HOOKS="1")
    with CrashingSession(local_device(), env=env, crash_on=lambda n, path: n == 2) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=SETTINGS, max_items=4)
    assert (r.measured, r.failed) == (3, 1)
    [failed] = store.measurements(T, status="failed")
    assert failed.error_kind == "crash" and "SIGSEGV" in failed.error_message
    # Resuming does not retry or duplicate the failed item.
    with LocalSession(local_device()) as s:
        r2 = run_campaign(s, T, store, budget_s=120, max_items=1)
    assert r2.skipped_already_done == 4
    assert len(store.measurements(T, status="failed")) == 1


def test_killed_campaign_loses_nothing_and_resumes(home):
    """SIGKILL the whole `edgecost profile` process mid-campaign, then resume it."""
    env = dict(os.environ, EDGECOST_HOME=str(home))
    script = textwrap.dedent(f"""
        import edgecost.api as api
        from edgecost.campaign import CampaignSettings
        from edgecost.bench import BenchSettings
        b = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=3, min_secs=0.0, max_secs=2.0, profile_runs=2)
        s = CampaignSettings(seed=11, families={SETTINGS.families!r}, bench=b, kernel_share=0.7)
        api.profile("local", budget_minutes=5, settings=s, train=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store()
    deadline = time.monotonic() + 120
    while store.count_measurements(T) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    before = {(m.campaign_item, m.median_ms) for m in store.measurements(T)}
    assert len(before) >= 3
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, max_items=2)
    after = {(m.campaign_item, m.median_ms) for m in store.measurements(T)}
    new_items = lambda rows: [i for i, _ in rows if "#r" not in i]  # noqa: E731 (revisits apart)
    assert before <= after and len(new_items(after)) == len(new_items(before)) + 2
    items = _items(store, r.campaign_id)
    assert len(items) == len(set(items))


class TimedBenches(LocalSession):
    """Records when each bench ran, to see what the host did meanwhile."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.spans: list[tuple[float, float]] = []

    def bench(self, device_model_path, **args):
        t0 = time.monotonic()
        try:
            return super().bench(device_model_path, **args)
        finally:
            self.spans.append((t0, time.monotonic()))


def test_prefetched_exports_overlap_the_device_and_measure_the_same_items(home, monkeypatch):
    """With prefetch, item i+1 is exported on the host while the device measures item i: the
    campaign stores the same items and models as a serial one, and a conversion that fails
    in the worker is reported and skipped like a serial one."""
    import edgecost.campaign as campaign
    from edgecost.errors import ConversionError

    prepared: list[tuple[float, float, int]] = []
    real_prepare = campaign._prepare
    failing = {}

    def prepare(spec, runtime, out_dir):
        t0 = time.monotonic()
        if spec.spec_id == failing.get("spec_id"):
            raise ConversionError("simulated converter failure")
        try:
            return real_prepare(spec, runtime, out_dir)
        finally:
            prepared.append((t0, time.monotonic(), threading.get_ident()))

    monkeypatch.setattr(campaign, "_prepare", prepare)
    serial_store = Store(home / "serial.sqlite")
    with LocalSession(local_device()) as s:
        serial = run_campaign(s, T, serial_store, budget_s=120, settings=SETTINGS, max_items=5)
    assert {t for *_, t in prepared} == {threading.get_ident()}  # LocalSession: no prefetch by default
    prepared.clear()
    ahead_store = Store(home / "ahead.sqlite")
    with TimedBenches(local_device()) as s:
        ahead = run_campaign(s, T, ahead_store, budget_s=120, settings=SETTINGS, max_items=5, prefetch=True)
    assert (serial.measured, ahead.measured) == (5, 5)

    def stored(st):
        return sorted((m.campaign_item, m.model_hash) for m in st.measurements(T))

    assert stored(serial_store) == stored(ahead_store)
    assert all(t != threading.get_ident() for *_, t in prepared)
    assert len(prepared) == 5  # nothing prepared past the item limit
    overlaps = [(a, b) for a, b, _ in prepared for c, d in s.spans if a < d and c < b]
    assert overlaps, "no export ran while the device measured"
    assert not any(p.name.startswith("edgecost-prepare") for p in threading.enumerate())

    # A conversion failure inside the worker: reported, not stored, the campaign goes on.
    events = []
    third = campaign.ItemStream(SETTINGS, 1).spec(2)
    failing["spec_id"] = third.spec_id
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, Store(home / "failing.sqlite"), budget_s=120, settings=SETTINGS, max_items=4,
                         prefetch=True, on_event=events.append)
    assert r.measured == 4
    assert [e.item for e in events if e.kind == "failed"] == [f"2:{third.spec_id}"]
    assert "simulated converter failure" in [e for e in events if e.kind == "failed"][0].message


def test_unknown_family_is_a_usage_error(home):
    from edgecost.errors import UsageError

    with LocalSession(local_device()) as s, pytest.raises(UsageError, match="unknown model families"):
        run_campaign(s, T, Store(), budget_s=10, settings=CampaignSettings(families=("nope",)))


class CrashOnSecondSlice(LocalSession):
    """The agent's worker dies from SIGSEGV while timing the second LiteRT op slice."""

    slices = 0

    def bench(self, device_model_path, **args):
        from edgecost.bench import SLICE_BENCH

        if (args["num_runs"], args["min_secs"]) == (SLICE_BENCH.num_runs, SLICE_BENCH.min_secs):
            CrashOnSecondSlice.slices += 1
            if CrashOnSecondSlice.slices == 2:
                args["test_hook"] = "segv"
        return super().bench(device_model_path, **args)


def test_tflite_campaign_times_each_distinct_operator_once(home):
    """LiteRT gives no per-op profile: the campaign times single-op slices, once per op signature."""
    from edgecost.tflite_profile import OpTimes
    from edgecost.graph.tflite_slice import op_signature
    from edgecost.predictor.dataset import build_dataset

    tfl = Target("local", "tflite", 1)
    settings = CampaignSettings(seed=5, families=("conv", "nb201"), bench=FAST, kernel_share=0.5)
    store = Store()
    env = dict(os.environ, EDGECOST_AGENT_TEST_HOOKS="1")
    with CrashOnSecondSlice(local_device(), env=env) as s:
        r = run_campaign(s, tfl, store, budget_s=300, settings=settings, max_items=3)
    assert (r.measured, r.failed) == (3, 0)  # a crashing slice costs that operator's time, not the model
    rows = store.measurements(tfl)
    sliced, missing = set(), 0
    for row in rows:
        kernels = store.model_graph(row.model_hash).kernels
        prof = row.measurement.node_profile
        assert {p["name"] for p in prof} <= {k.name for k in kernels}
        assert all(p["median_us"] > 0 and p["source"] == "op-slice" for p in prof)
        assert all(0 < p["min_us"] <= p["median_us"] for p in prof)  # the slice's fastest run too
        sliced |= {op_signature(k) for k in kernels}
        missing += len(kernels) - len(prof)
    assert missing >= 1  # the crashed slice's operator has no time
    known = OpTimes.from_store(store, tfl).times_us
    assert len(known) == len(sliced) - 1
    # Resuming seeds the known times: no operator is timed twice.
    with CrashOnSecondSlice(local_device(), env=env) as s:
        before = CrashOnSecondSlice.slices
        run_campaign(s, tfl, store, budget_s=300, max_items=1)
    new = {op_signature(k) for row in store.measurements(tfl)[-1:]
           for k in store.model_graph(row.model_hash).kernels}
    assert CrashOnSecondSlice.slices - before <= len(new - set(known))
    ds = build_dataset(store, tfl)
    assert len(ds.models) == 4 and all(m.has_kernel_times for m in ds.models)
    assert {m.kernel_times_source for m in ds.models} == {"op-slices"}  # reconciled in proportion


def test_kernels_derived_by_an_older_edgecost_are_rebuilt(home, monkeypatch):
    """The store keeps each model's executed kernels; a newer derivation (KERNELS_VERSION) does not reuse them."""
    from dataclasses import replace

    from edgecost.predictor import dataset
    from edgecost.records import ModelGraph

    store = Store()
    with LocalSession(local_device()) as s:
        run_campaign(s, T, store, budget_s=120, settings=replace(SETTINGS, kernel_share=0.0), max_items=1)
    fresh = dataset.build_dataset(store, T).models[0]
    stale = [replace(k, attrs={**k.attrs, "derived_by": "an older edgecost"}) for k in fresh.kernels]
    view = f"onnxruntime:all:{dataset.host_runtime_version('onnxruntime')}:k{dataset.KERNELS_VERSION}"
    store.put_view(fresh.key, view, ModelGraph(content_hash=fresh.key, format="executed", kernels=tuple(stale),
                                                 inputs={}, outputs={}))
    assert dataset.build_dataset(store, T).models[0].kernels == stale  # this version's view is reused
    monkeypatch.setattr(dataset, "KERNELS_VERSION", dataset.KERNELS_VERSION + 1)
    assert dataset.build_dataset(store, T).models[0].kernels == fresh.kernels
    # A model whose file is gone keeps the newest older derivation rather than dropping out of training.
    monkeypatch.setattr(dataset, "KERNELS_VERSION", dataset.KERNELS_VERSION + 1)
    monkeypatch.setattr(dataset._ArtifactSource, "path", lambda self, model_hash: None)
    assert dataset.build_dataset(store, T).models[0].kernels == fresh.kernels
    store.put_view(fresh.key, view.rsplit(":k", 1)[0], ModelGraph(content_hash=fresh.key, format="executed",
                                                                  kernels=tuple(stale), inputs={}, outputs={}))
    assert dataset.build_dataset(store, T).models[0].kernels == fresh.kernels  # k-versioned beats unversioned


def test_compare_campaigns_reports_drift_of_models_measured_twice(tmp_path, monkeypatch):
    """scripts/compare_campaigns.py: two stores of same-seed campaigns share models; their ratio is reported."""
    import json as _json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_campaigns.py"
    homes = [tmp_path / "a", tmp_path / "b"]
    settings = CampaignSettings(seed=3, families=("conv", "nb201"), bench=FAST, kernel_share=0.5)
    for home in homes:
        monkeypatch.setenv("EDGECOST_HOME", str(home))
        with LocalSession(local_device()) as s:
            run_campaign(s, T, Store(), budget_s=120, settings=settings, max_items=2)
    out = subprocess.run([sys.executable, str(script), *map(str, homes)], capture_output=True, text=True, check=True)
    report = _json.loads(out.stdout)
    assert report["(all)"]["n"] == 2 and report["(all)"]["median_ratio"] > 0
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "none"), str(homes[1])],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no store at")
    assert "Traceback" not in missing.stderr


# -- revisits: the same model timed again minutes later --------------------------------------

# Every model revisited alike (no settling): the tests of the revisit mechanics below count on it.
REVISITING = CampaignSettings(seed=11, families=("conv", "nb201"), bench=FAST, kernel_share=0.5,
                              revisit_share=0.5, revisit_min_gap_s=0.0, revisit_settle_pct=0.0)


def test_revisits_time_models_again_and_labels_combine_the_visits(home):
    from edgecost.campaign import revisit_base
    from edgecost.predictor.dataset import build_dataset

    store = Store()
    events = []
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=REVISITING, max_items=4, on_event=events.append)
    # One revisit is due after each new item; the limit stops the campaign before the fourth's.
    assert (r.measured, r.revisited, r.failed) == (4, 3, 0)
    assert [e.kind for e in events if e.kind in ("measured", "revisited")] == ["measured", "revisited"] * 3 + ["measured"]
    rows = store.measurements(T, campaign_id=r.campaign_id)
    first = {m.campaign_item: m for m in rows if "#r" not in m.campaign_item}
    again = [m for m in rows if "#r" in m.campaign_item]
    assert len(first) == 4 and len(again) == 3
    for m in again:
        assert m.campaign_item.endswith("#r1") and m.model_hash == first[revisit_base(m.campaign_item)].model_hash
        assert m.measurement.node_profile  # a revisit brings a second per-node profile
    fastest = {tm.key: tm for tm in build_dataset(store, T, statistic="min").models}
    # Three revisited models are too few for ``auto`` to judge the statistics: it takes the fastest run.
    assert build_dataset(store, T).statistic == "min"
    middle = {tm.key: tm for tm in build_dataset(store, T, statistic="median").models}
    for m in again:
        visits = [x for x in rows if x.model_hash == m.model_hash]
        assert fastest[m.model_hash].latency_ms == pytest.approx(min(x.measurement.stats.min_ms for x in visits))
        assert middle[m.model_hash].latency_ms == pytest.approx(sum(x.median_ms for x in visits) / 2)
        # Each kernel's fastest profiled run over both visits, never slower than its median over them.
        quick, typical = fastest[m.model_hash].kernel_times_us, middle[m.model_hash].kernel_times_us
        assert quick and len(quick) == len(typical)
        pairs = [(q, t) for q, t in zip(quick, typical) if q is not None and t is not None]
        assert pairs and all(q <= t for q, t in pairs) and any(q < t for q, t in pairs)
    assert all(min(x.measurement.stats.min_ms for x in rows if x.model_hash == tm.key) == pytest.approx(tm.latency_ms)
               for tm in fastest.values())


def test_revisits_resume_without_duplicates_and_go_to_the_least_visited(home):
    store = Store()
    with LocalSession(local_device()) as s:
        r1 = run_campaign(s, T, store, budget_s=120, settings=REVISITING, max_items=2)
    assert (r1.measured, r1.revisited) == (2, 1)
    with LocalSession(local_device()) as s:
        r2 = run_campaign(s, T, store, budget_s=120, max_items=1)  # resumes with the stored settings
    assert r2.campaign_id == r1.campaign_id and r2.skipped_already_done == 2
    items = _items(store, r1.campaign_id)
    assert len(items) == len(set(items))
    # The model seen once (the second) is timed again before any model gets a third visit.
    assert sorted(i.split("#")[1] for i in items if "#" in i) == ["r1", "r1"]


def test_revisits_wait_for_the_minimum_gap(home):
    store = Store()
    slow = CampaignSettings(**{**REVISITING.to_dict(), "families": REVISITING.families, "bench": FAST,
                               "revisit_min_gap_s": 3600.0})
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=slow, max_items=3)
    assert (r.measured, r.revisited) == (3, 0)


def test_a_crashing_revisit_is_recorded_and_that_model_is_not_tried_again(home):
    store = Store()
    env = dict(os.environ, EDGECOST_AGENT_TEST_HOOKS="1")
    # A kept artifact is only timed on a revisit: every revisit crashes.
    with CrashingSession(local_device(), env=env, crash_on=lambda n, path: "artifacts" in path) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=REVISITING, max_items=3)
    assert (r.measured, r.revisited, r.failed) == (3, 0, 0)
    failed = store.measurements(T, status="failed")
    # One failed revisit per model, each model's only one: the models stay, with their first visit.
    assert len(failed) == 2 and all(f.campaign_item.endswith("#r1") for f in failed)
    assert len({f.campaign_item for f in failed}) == 2
    assert len(store.measurements(T, status="ok")) == 3
    # A resume knows those models failed again and does not try them a third time.
    with LocalSession(local_device()) as s:
        run_campaign(s, T, store, budget_s=120, max_items=1)
    items = _items(store, r.campaign_id)
    assert len(items) == len(set(items))


def test_a_revisit_whose_artifact_is_gone_is_skipped(home):
    from edgecost import paths

    store = Store()

    class RemoveArtifacts(LocalSession):
        def bench(self, device_model_path, **args):
            out = super().bench(device_model_path, **args)
            for f in paths.artifacts_dir().glob("*"):
                f.unlink()
            return out

    with RemoveArtifacts(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=REVISITING, max_items=3)
    assert (r.measured, r.revisited, r.failed) == (3, 0, 0)
    assert not store.measurements(T, status="failed")


def test_revisit_share_is_checked_and_old_campaign_settings_have_none():
    from edgecost.errors import UsageError

    with pytest.raises(UsageError, match="revisit share"):
        CampaignSettings(revisit_share=1.0)
    old = CampaignSettings().to_dict()
    del old["revisit_share"], old["revisit_min_gap_s"]
    assert CampaignSettings.from_dict(old).revisit_share == 0.0


def test_no_model_gets_a_third_visit_while_another_waits_for_its_second(home):
    from edgecost.campaign import Revisits

    store = Store()
    cid = store.create_campaign(T, 1, CampaignSettings().to_dict())
    rv = Revisits(store, cid, share=0.5, min_gap_s=60.0)
    now = time.monotonic()
    rv.note("0:a", "ha", at=now - 600)
    rv.note("0:a#r1", "ha", at=now - 300)  # visited twice, long ago
    rv.note("1:b", "hb", at=now - 5)  # visited once, just now
    assert rv.pick() is None  # b is too recent, and a must not get a third visit first
    rv.note("2:c", "hc", at=now - 120)
    assert rv.pick() == ("2:c#r1", "2:c", "hc")
    rv.drop("1:b"), rv.drop("2:c")
    assert rv.pick() == ("0:a#r2", "0:a", "ha")
    # At share 0.5 one revisit is due per new item: 3 new items and 1 revisit so far.
    assert rv.due()
    rv.note("0:a#r2", "ha"), rv.note("2:c#r1", "hc")
    assert not rv.due()


def test_settled_models_are_not_revisited_and_disagreeing_ones_are():
    from edgecost.campaign import Revisits

    store = Store()
    cid = store.create_campaign(T, 1, CampaignSettings().to_dict())
    rv = Revisits(store, cid, share=0.5, min_gap_s=0.0, settle_pct=3.0, max_visits=4)
    past = time.monotonic() - 600
    for item, h, first, second in (("0:a", "ha", 10.0, 10.2), ("1:b", "hb", 10.0, 13.0)):
        rv.note(item, h, at=past, fastest_ms=first)
        assert rv.pick() is not None  # one visit: never settled
        rv.note(f"{item}#r1", h, at=past, fastest_ms=second)
    # a's visits agree within 3 %: settled; b's differ by 30 % (one ran in a slow spell): timed again.
    assert rv.settled("0:a") and not rv.settled("1:b")
    assert rv.pick() == ("1:b#r2", "1:b", "hb")
    rv.note("1:b#r2", "hb", at=past, fastest_ms=10.1)
    assert rv.settled("1:b") and rv.pick() is None  # every visited model settled: turns go to new items
    # Fewest visits first among the unsettled: c's second visit before b's fourth.
    rv.note("2:c", "hc", at=past, fastest_ms=7.0)
    rv.note("3:d", "hd", at=past, fastest_ms=5.0)
    rv.note("3:d#r1", "hd", at=past, fastest_ms=8.0)
    assert rv.pick() == ("2:c#r1", "2:c", "hc")
    # A model visited moments ago waits for the gap.
    soon = Revisits(store, cid, share=0.5, min_gap_s=60.0, settle_pct=3.0)
    soon.note("0:d", "hd", fastest_ms=4.0)
    assert soon.pick() is None
    # The cap holds even for a model that never settles.
    capped = Revisits(store, cid, share=0.5, min_gap_s=0.0, settle_pct=3.0, max_visits=2)
    capped.note("0:c", "hc", at=past, fastest_ms=5.0)
    capped.note("0:c#r1", "hc", at=past, fastest_ms=9.0)
    assert capped.pick() is None
    # Without a tolerance every model is revisited alike, as campaigns stored before settling were.
    alike = Revisits(store, cid, share=0.5, min_gap_s=0.0)
    alike.note("0:a", "ha", at=past, fastest_ms=10.0)
    alike.note("0:a#r1", "ha", at=past, fastest_ms=10.0)
    assert alike.pick() == ("0:a#r2", "0:a", "ha")


def test_revisit_settling_is_checked_and_old_campaigns_resume_without_it():
    from edgecost.errors import UsageError

    with pytest.raises(UsageError, match="settle"):
        CampaignSettings(revisit_settle_pct=-1.0)
    with pytest.raises(UsageError, match="settle"):
        CampaignSettings(revisit_max_visits=1)
    old = CampaignSettings().to_dict()
    del old["revisit_settle_pct"], old["revisit_max_visits"]
    restored = CampaignSettings.from_dict(old)
    assert restored.revisit_settle_pct == 0.0 and restored.revisit_max_visits == CampaignSettings.revisit_max_visits


def test_a_campaign_stops_revisiting_settled_models(home):
    # A tolerance no pair of visits can miss: every model settles at its second visit, so no
    # third visit, and the turns after that go to new models.
    wide = CampaignSettings(**{**REVISITING.to_dict(), "families": REVISITING.families, "bench": FAST,
                               "revisit_settle_pct": 1000.0, "revisit_share": 0.75})
    store = Store()
    with LocalSession(local_device()) as s:
        r = run_campaign(s, T, store, budget_s=120, settings=wide, max_items=3)
    items = _items(store, r.campaign_id)
    again = [i for i in items if "#" in i]
    assert r.measured == 3 and sorted(again) == sorted(f"{i}#r1" for i in items if "#" not in i)[:len(again)]
    assert all(i.endswith("#r1") for i in again) and r.revisited == len(again) <= 3
    assert Store().campaigns()[-1]["settings"]["revisit_settle_pct"] == 1000.0


def test_the_noise_watch_warns_once_when_second_visits_stop_agreeing():
    """Second visits that disagree with first ones (a neighbour took the device) raise one warning;
    a quiet run, or visits loaded from an earlier run, raise none."""
    from edgecost.campaign import NOISE_WINDOW, CampaignEvent, CampaignResult, Revisits, _watch_noise

    store = Store()
    cid = store.create_campaign(T, 1, CampaignSettings().to_dict())

    def run(second_ms: list[float], at=None) -> tuple[CampaignResult, list[CampaignEvent]]:
        rv = Revisits(store, cid, share=0.5, min_gap_s=0.0)
        result, events = CampaignResult(campaign_id=cid, target=T), []
        for i, ms in enumerate(second_ms):
            rv.note(f"{i}:m", f"h{i}", at=at, fastest_ms=10.0)
            rv.note(f"{i}:m#r1", f"h{i}", at=at, fastest_ms=ms)
            _watch_noise(rv, result, events.append)
        return result, events

    quiet, events = run([10.3] * NOISE_WINDOW * 2)
    assert quiet.warnings == [] and events == []
    # 2 in 20 off by 15 %: still 90 % agreeing, no warning.
    assert run([11.5, 11.5] + [10.1] * (NOISE_WINDOW - 2))[0].warnings == []
    # Half of them 15-40 % slow: one warning, however long the noise lasts.
    noisy, events = run([10.1, 14.0, 11.5, 10.0] * NOISE_WINDOW)
    assert len(noisy.warnings) == 1 and "contended" in noisy.warnings[0] and "50%" in noisy.warnings[0]
    assert [e.kind for e in events] == ["warning"]
    # Fewer networks than the window: too few to judge.
    assert run([14.0] * (NOISE_WINDOW - 1))[0].warnings == []
    # Visits read back from the store (an earlier run) are not this run's noise.
    assert run([14.0] * NOISE_WINDOW, at=float("-inf"))[0].warnings == []
