"""Training data for one target, assembled from the store.

For each measured model: its end-to-end latency over all its visits, by the chosen
statistic (``labels``; ``auto`` is resolved here by the campaign's revisits, and by a fit for
each statistic where a profile is fitted: ``edgecost.predictor.train.fit_by_statistic``), the kernels the target's
runtime executes (obtained on the host, see ``edgecost.fusion``) and the measured
per-kernel times by the same statistic, aligned with those kernels by node name: ONNX
Runtime's per-node profile, or for LiteRT the times of the model's single-operator slices
(``edgecost.graph.tflite_slice``, timed by the campaign).
"""

from __future__ import annotations

import logging
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fusion import (
    KERNELS_VERSION,
    ORT_LEVELS,
    ExecutionSpec,
    align_times,
    executed_kernels,
    host_ort_version,
    kernels_from_profile,
    op_agreement,
    xnnpack_kernels,
)
from ..records import KernelRecord, ModelGraph, Target
from ..store import Store
from .drift import estimate_drift, no_drift, visits_of
from .labels import (
    AUTO_FALLBACK,
    DEFAULT_DRIFT,
    DEFAULT_LATENCY_STATISTIC,
    check_drift,
    check_statistic,
    choose_statistic,
    combine_visits,
    model_latency_ms,
    node_time_us,
)
from .model import TrainingModel

log = logging.getLogger(__name__)


@dataclass
class TargetDataset:
    target: Target
    models: list[TrainingModel]
    execution: ExecutionSpec
    skipped: dict[str, int] = field(default_factory=dict)
    runtime_version: str = ""
    agent_version: str = ""
    device_seconds: float = 0.0
    statistic: str = AUTO_FALLBACK  # the concrete statistic the labels are by
    statistic_choice: dict[str, Any] = field(default_factory=dict)  # how it was chosen (labels.choose_statistic)
    host_drift: dict[str, Any] = field(default_factory=dict)  # the speed drift the labels were corrected for (drift)

    @property
    def families(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for m in self.models:
            out[m.family or "user"] += 1
        return dict(sorted(out.items()))


class _ArtifactSource:
    """The model file behind a stored model: the kept artifact, else rebuilt from its zoo spec."""

    def __init__(self, store: Store):
        self.store = store
        self._tmp = tempfile.TemporaryDirectory(prefix="edgecost-train-")

    def path(self, model_hash: str) -> Path | None:
        m = self.store.model(model_hash)
        if m is None:
            return None
        if m.artifact_path and Path(m.artifact_path).is_file():
            return Path(m.artifact_path)
        if m.source and Path(m.source).is_file():
            return Path(m.source)
        if m.spec:
            try:
                from .. import convert, zoo

                spec = zoo.ModelSpec.from_dict(m.spec)
                return convert.export_spec(spec, Path(self._tmp.name), fmt=m.format, exporter="torchscript")
            except Exception as exc:  # noqa: BLE001 - torch missing or spec no longer buildable: skip model
                log.debug("cannot rebuild %s: %s", model_hash[:12], exc)
        return None

    def close(self) -> None:
        self._tmp.cleanup()


def _host_kernels(store: Store, src: _ArtifactSource, model_hash: str, graph: ModelGraph, spec: ExecutionSpec,
                  cache: dict) -> list[KernelRecord] | None:
    key = (model_hash, spec.runtime, spec.ort_level)
    if key in cache:
        return cache[key]
    view = f"{spec.runtime}:{spec.ort_level}:{spec.host_runtime_version}:k{KERNELS_VERSION}"
    stored = store.view(model_hash, view)
    if stored is not None:
        cache[key] = list(stored.kernels)
        return cache[key]
    if spec.runtime == "tflite":
        kernels = xnnpack_kernels(graph.kernels)
    else:
        path = src.path(model_hash)
        if path is None:
            # The file is gone: an older derivation of its kernels beats losing the model.
            cache[key] = _older_view(store, model_hash, view)
            return cache[key]
        kernels = executed_kernels(path, graph, spec)
        store.put_view(model_hash, view, ModelGraph(content_hash=model_hash, format="executed", kernels=tuple(kernels),
                                                    inputs=graph.inputs, outputs=graph.outputs))
    cache[key] = kernels
    return kernels


def _older_view(store: Store, model_hash: str, view: str) -> list[KernelRecord] | None:
    """The kernels an earlier KERNELS_VERSION derived for the same runtime, level and version, if kept."""
    base = view.rsplit(":k", 1)[0]
    older = {1 if v == base else int(v[len(base) + 2:]): v for v in store.view_names(model_hash)
             if v == base or (v.startswith(base + ":k") and v[len(base) + 2:].isdigit())}
    if not older:
        return None
    newest = older[max(older)]
    log.info("model %s: file unavailable, using kernels derived by an older edgecost (%s)", model_hash[:12], newest)
    stored = store.view(model_hash, newest)
    return list(stored.kernels) if stored is not None else None


def host_runtime_version(runtime: str) -> str:
    return host_ort_version() if runtime == "onnxruntime" else ""


def build_dataset(store: Store, target: Target, *, ort_level: str | None = None,
                  level_probe_models: int = 24, statistic: str = DEFAULT_LATENCY_STATISTIC,
                  drift: str = DEFAULT_DRIFT) -> TargetDataset:
    """Everything the predictor of ``target`` learns from, with the execution spec chosen;
    labels by ``statistic`` (``labels.STATISTIC_CHOICES``; ``auto`` is resolved here, on the
    target's stored visits, and the dataset carries the concrete statistic and why), each visit
    taken at the device's average speed where ``drift`` is ``revisits`` and the revisits show
    the speed moved (``edgecost.predictor.drift``)."""
    check_statistic(statistic)
    check_drift(drift)
    rows = store.measurements(target, status="ok")
    by_model: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_model[r.model_hash].append(r)
    statistic, choice = choose_statistic(by_model, statistic)
    host_drift = (estimate_drift(visits_of(rows, lambda r: model_latency_ms([r], statistic))) if drift == "revisits"
                  else no_drift("not asked for (--drift none)"))

    def speed(visit) -> float:
        return host_drift.factor(visit.id)

    src = _ArtifactSource(store)
    cache: dict = {}
    skipped: dict[str, int] = defaultdict(int)
    try:
        version = host_runtime_version(target.runtime)
        if target.runtime == "onnxruntime":
            spec = _choose_ort_level(store, src, by_model, version, ort_level, level_probe_models, cache)
        else:
            spec = ExecutionSpec(runtime=target.runtime, host_runtime_version=version)
        models: list[TrainingModel] = []
        for model_hash, ms in by_model.items():
            stored = store.model(model_hash)
            if stored is None or stored.format not in ("onnx", "tflite"):
                skipped["not a graph model"] += 1
                continue
            graph = store.model_graph(model_hash)
            kernels = _host_kernels(store, src, model_hash, graph, spec, cache)
            if not kernels:
                skipped["model file unavailable"] += 1
                continue
            latency = model_latency_ms(ms, statistic, speed)
            times, times_source = None, "node-profile"
            with_profile = [m for m in ms if m.measurement and m.measurement.node_profile]
            if with_profile:
                kernels, times = _profiled_times(kernels, [m.measurement for m in with_profile], spec.runtime,
                                                 statistic, [speed(m) for m in with_profile])
                # LiteRT's times are of single-operator slices, each timed as its own model.
                if any(e.get("source") == "op-slice" for m in with_profile for e in m.measurement.node_profile):
                    times_source = "op-slices"
            models.append(TrainingModel(key=model_hash, kernels=kernels, latency_ms=latency, kernel_times_us=times,
                                        family=stored.family or "", meta={"source": stored.source},
                                        kernel_times_source=times_source))
        last = rows[-1].measurement if rows else None
        device_s = sum(float(c["device_seconds"]) for c in store.campaigns() if c["target_key"] == target.key)
        return TargetDataset(target=target, models=models, execution=spec, skipped=dict(skipped),
                             runtime_version=last.runtime_version if last else "",
                             agent_version=last.agent_version if last else "", device_seconds=device_s,
                             statistic=statistic, statistic_choice=choice, host_drift=host_drift.record)
    finally:
        src.close()


def _profiled_times(kernels: list, profiles: list, runtime: str,
                    statistic: str = DEFAULT_LATENCY_STATISTIC, speeds: list[float] | None = None) -> tuple[list, list]:
    """(kernels, per-kernel µs) from a model's per-node profiles, one per visit, each visit's
    times divided by its speed factor (``speeds``, ``edgecost.predictor.drift``; 1 if not given).

    Aligned to the host's kernels when those name at least 90 % of what the device ran; each
    kernel's time is then combined, by ``statistic``, over the visits whose profile aligned.
    Otherwise the device's own kernels of the last visit are learned from.
    """
    speeds = speeds or [1.0] * len(profiles)

    folded = {n for k in kernels for n in k.attrs.get("covers", ())} if runtime == "tflite" else set()
    visits = []
    profiled = []
    for meas, factor in zip(profiles, speeds):
        profiled = kernels_from_profile(meas.node_profile, meas.optimized_nodes,
                                        lambda entry, f=factor: node_time_us(entry, statistic) / f)
        if folded:  # a PAD the delegate folds into its convolution costs nothing
            profiled = [(k, t) for k, t in profiled if k.name not in folded]
        aligned, share = align_times(kernels, profiled)
        if share >= 0.9:
            visits.append(aligned)
    if not visits:
        # The host's kernels do not name the device's: learn from the device's own kernels.
        return [k for k, _ in profiled], [t for _, t in profiled]
    if len(visits) == 1:
        return kernels, visits[0]
    return kernels, [combine_visits([v[i] for v in visits], statistic) for i in range(len(kernels))]


def _choose_ort_level(store, src, by_model, version, forced, n_probe, cache) -> ExecutionSpec:
    """The host optimizer level whose kernels best match what the device ran."""
    if forced:
        return ExecutionSpec("onnxruntime", forced, None, version)
    probes = []
    for model_hash, ms in by_model.items():
        prof = [m for m in ms if m.measurement and m.measurement.node_profile]
        if prof:
            probes.append((model_hash, prof[-1].measurement))
        if len(probes) >= n_probe:
            break
    if not probes:
        return ExecutionSpec("onnxruntime", "all", None, version)
    best = None
    for level in ORT_LEVELS:
        spec = ExecutionSpec("onnxruntime", level, None, version)
        scores = []
        for model_hash, meas in probes:
            graph = store.model_graph(model_hash)
            kernels = _host_kernels(store, src, model_hash, graph, spec, cache)
            if kernels is None:
                continue
            scores.append(op_agreement(kernels, kernels_from_profile(meas.node_profile, meas.optimized_nodes)))
        if scores:
            score = float(np.mean(scores))
            if best is None or score > best[1] + 1e-9:
                best = (level, score)
            if score >= 0.999:
                break
    level, score = best if best else ("all", None)
    return ExecutionSpec("onnxruntime", level, score, version)
