"""The host's speed over a campaign, estimated from its revisits (``edgecost.predictor.drift``)."""

from __future__ import annotations

import math
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from edgecost.predictor.dataset import build_dataset
from edgecost.predictor.drift import MIN_PAIRS, SEGMENT_GAP_S, Visit, estimate_drift, parse_time_s, visits_of
from edgecost.predictor.labels import model_latency_ms
from edgecost.records import Target
from edgecost.store import Store


def _campaign(speed, n_models=80, minutes=15.0, gap_s=60.0, noise=0.01, seed=0, start_s=0.0, prefix="m"):
    """Visits of ``n_models`` models, each timed twice ``gap_s`` apart at random moments of a
    campaign, on a host whose speed factor at ``t`` seconds is ``speed(t)``."""
    rng = np.random.default_rng(seed)
    visits, base = [], {}
    for m in range(n_models):
        name = f"{prefix}{m}"
        base[name] = float(np.exp(rng.uniform(-1, 3)))
        t1 = start_s + rng.uniform(0, minutes * 60 - gap_s)
        for t in (t1, t1 + gap_s):
            visits.append(Visit(id=len(visits) + (10_000 if prefix != "m" else 0), model=name, at_s=t,
                                latency_ms=base[name] * speed(t - start_s) * float(np.exp(rng.normal(0, noise)))))
    return visits, base


def _wave(t):
    return math.exp(0.08 * math.sin(2 * math.pi * t / 600.0))


def test_a_drifting_host_is_found_and_every_visit_taken_at_its_average_speed():
    visits, base = _campaign(_wave)
    d = estimate_drift(visits)
    assert d.applied and d.record["pairs"] == 80 and d.record["segments"] == 1
    cv = d.record["cv_mean_abs_log_error"]
    assert cv["with"] < 0.5 * cv["without"]
    lo, hi = d.record["range_pct"]
    assert -10 < lo < -5 and 5 < hi < 10  # the wave is ±8 %
    # The factors follow the wave, up to the campaign's average speed.
    true = np.log([_wave(v.at_s) for v in visits])
    est = np.log([d.factor(v.id) for v in visits])
    assert abs(np.mean(est)) < 1e-6
    dev = (est - np.mean(est)) - (true - np.mean(true))
    assert np.max(np.abs(dev)) < 0.05 and np.sqrt(np.mean(dev ** 2)) < 0.02
    # Corrected, a model's two visits agree, and every model sits at one speed.
    ratio = np.array([v.latency_ms / d.factor(v.id) / base[v.model] for v in visits])
    raw = np.array([v.latency_ms / base[v.model] for v in visits])
    assert np.std(np.log(ratio)) < 0.4 * np.std(np.log(raw))


def test_a_steady_host_is_left_as_measured():
    visits, _ = _campaign(lambda t: 1.0, noise=0.03)
    d = estimate_drift(visits)
    assert not d.applied and d.factor_by_id == {}
    assert "held its speed" in d.record["reason"]
    assert all(d.factor(v.id) == 1.0 for v in visits)


def test_too_few_revisits_correct_nothing():
    visits, _ = _campaign(_wave, n_models=MIN_PAIRS - 1)
    d = estimate_drift(visits)
    assert not d.applied and f"{MIN_PAIRS - 1} revisit pairs" in d.record["reason"]
    assert not estimate_drift([]).applied


def test_a_wild_visit_does_not_bend_the_estimate():
    visits, _ = _campaign(_wave, seed=3)
    clean = estimate_drift(visits)
    wild = list(visits)
    wild[10] = Visit(id=wild[10].id, model=wild[10].model, at_s=wild[10].at_s, latency_ms=wild[10].latency_ms * 2.5)
    bent = estimate_drift(wild)
    assert bent.applied
    others = [v.id for v in visits if v.id != wild[10].id]
    # Plain least squares moves the others' factors by up to 20 % here; Huber's weights, by 3 %.
    assert max(abs(math.log(bent.factor(i) / clean.factor(i))) for i in others) < 0.04


def test_campaigns_apart_keep_their_own_average_unless_revisits_join_them():
    a, _ = _campaign(_wave, seed=1)
    # A second campaign two hours later, the host 20 % slower throughout, with other models.
    later = 2 * 3600.0
    b, _ = _campaign(lambda t: 1.2 * _wave(t), seed=2, start_s=later, prefix="n")
    d = estimate_drift(a + b)
    assert d.applied and d.record["segments"] == 2
    for part in (a, b):  # no revisit crosses: each campaign is its own average
        assert abs(np.mean(np.log([d.factor(v.id) for v in part]))) < 1e-6
    # Models of the first campaign timed again in the second join them: the second is slower.
    rng = np.random.default_rng(7)
    again = [Visit(id=20_000 + i, model=v.model, at_s=later + rng.uniform(0, 840),
                   latency_ms=v.latency_ms / _wave(v.at_s) * 1.2 * _wave(rng.uniform(0, 840)))
             for i, v in enumerate(a[::2][:30])]
    d = estimate_drift(a + b + again)
    assert d.record["segments"] == 2
    first = np.mean(np.log([d.factor(v.id) for v in a]))
    second = np.mean(np.log([d.factor(v.id) for v in b]))
    assert second - first == pytest.approx(math.log(1.2), abs=0.05)


def test_times_are_read_from_iso_strings_and_visits_without_one_are_left_out():
    assert parse_time_s("2026-12-07T22:12:05+00:00") == parse_time_s("2026-12-07T22:12:05Z")
    assert parse_time_s("2026-12-07T22:12:35+00:00") - parse_time_s("2026-12-07T22:12:05+00:00") == 30
    assert parse_time_s("") is None and parse_time_s("yesterday") is None and parse_time_s(None) is None

    class Row:
        def __init__(self, i, at, ms):
            self.id, self.model_hash, self.median_ms = i, "h", ms
            self.measurement = type("M", (), {"measured_at": at})()

    rows = [Row(1, "2026-12-07T22:12:05+00:00", 2.0), Row(2, "not a time", 2.0), Row(3, "2026-12-07T22:13:05Z", 0.0)]
    assert [v.id for v in visits_of(rows, lambda r: r.median_ms)] == [1]
    assert SEGMENT_GAP_S >= 60


@pytest.fixture(scope="module")
def drifted_home(profiled, tmp_path_factory):
    """The fixture campaign's store, its visits spread over 15 minutes on a host whose speed
    swings ±10 %, each visited again 90 s later."""
    home = tmp_path_factory.mktemp("drifted") / "home"
    shutil.copytree(profiled.home, home)
    con = sqlite3.connect(home / "edgecost.sqlite")
    cols = [r[1] for r in con.execute("PRAGMA table_info(measurements)")]
    rows = con.execute("SELECT * FROM measurements WHERE status = 'ok' ORDER BY id").fetchall()
    t0 = datetime(2026, 12, 7, 22, 0, tzinfo=timezone.utc)
    stats = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "p95_ms", "p99_ms")

    def speed(t):
        return math.exp(0.1 * math.sin(2 * math.pi * t / 600.0))

    true_ms = {}
    for k, row in enumerate(rows):
        rec = dict(zip(cols, row))
        true_ms.setdefault(rec["model_hash"], []).append(rec["median_ms"])
        for again, t in ((False, 10.0 * k), (True, 10.0 * k + 90.0)):
            new = dict(rec, measured_at=(t0 + timedelta(seconds=t)).isoformat(timespec="seconds"))
            for s in stats:
                if new[s] is not None:
                    new[s] = rec[s] * speed(t)
            if again:
                new.pop("id")
                new["campaign_item"] = f"{rec['campaign_item']}#drift-test"
                con.execute(f"INSERT INTO measurements ({', '.join(new)}) VALUES ({', '.join('?' * len(new))})",
                            list(new.values()))
            else:
                con.execute(f"UPDATE measurements SET {', '.join(f'{s} = ?' for s in stats)}, measured_at = ?"
                            " WHERE id = ?", [new[s] for s in stats] + [new["measured_at"], rec["id"]])
    con.commit()
    con.close()
    return home, {h: float(np.median(v)) for h, v in true_ms.items()}


def test_build_dataset_labels_every_visit_at_the_average_speed(drifted_home):
    home, true_ms = drifted_home
    store = Store(home / "edgecost.sqlite")
    target = Target("local", "onnxruntime", 1)
    corrected = build_dataset(store, target, statistic="median")
    assert corrected.host_drift["applied"] and corrected.host_drift["pairs"] >= MIN_PAIRS
    as_measured = build_dataset(store, target, statistic="median", drift="none")
    assert not as_measured.host_drift["applied"] and "--drift none" in as_measured.host_drift["reason"]

    def spread(ds):  # how far labels sit from the undrifted figures, beyond one common factor
        r = np.log([m.latency_ms / true_ms[m.key] for m in ds.models])
        return float(np.std(r))

    assert spread(corrected) < 0.5 * spread(as_measured)
    # The labels are the stored visits divided by their speed factors, and the kernel times with them.
    rows = store.measurements(target, status="ok")
    d = estimate_drift(visits_of(rows, lambda r: model_latency_ms([r], "median")))
    by_model = {}
    for r in rows:
        by_model.setdefault(r.model_hash, []).append(r)
    for m in corrected.models:
        assert m.latency_ms == pytest.approx(model_latency_ms(by_model[m.key], "median", lambda v: d.factor(v.id)))
    raw = {m.key: m for m in as_measured.models}
    timed = [m for m in corrected.models if m.kernel_times_us is not None and raw[m.key].kernel_times_us is not None]
    assert timed
    assert any(abs(sum(m.kernel_times_us) / sum(raw[m.key].kernel_times_us) - 1) > 0.01 for m in timed)


def test_evaluate_reports_the_drift_it_corrected(drifted_home):
    from edgecost.evaluate import evaluate_target, format_report

    home, _ = drifted_home
    store = Store(home / "edgecost.sqlite")
    report = evaluate_target(Target("local", "onnxruntime", 1), protocol="random", seeds=1, store=store,
                             statistic="median", params={"n_estimators": 40, "folds": 3})
    assert report["host_drift"]["applied"]
    assert "host speed drift corrected for: the device's speed moved" in format_report(report)
    plain = evaluate_target(Target("local", "onnxruntime", 1), protocol="random", seeds=1, store=store,
                            statistic="median", drift="none", params={"n_estimators": 40, "folds": 3})
    assert "host speed drift not corrected: not asked for" in format_report(plain)
