"""LiteRT per-operator times, measured as single-operator slices of the model.

LiteRT's interpreter reports no per-op times; :class:`OpTimes` cuts the distinct operators
of a ``.tflite`` (``edgecost.graph.tflite_slice``), times each slice on the device through
an agent session, and returns a per-node profile in the layout ONNX Runtime's has, so the
predictor learns from both the same way.  A campaign keeps one ``OpTimes`` per target so
an operator seen in an earlier model (or an earlier campaign) is not timed twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .bench import SLICE_BENCH, BenchSettings, bench_args
from .errors import AgentError, ConnectionLostError, ModelFileError
from .records import Target
from .store import Store

log = logging.getLogger(__name__)


class OpTimes:
    """Per-operator times of a LiteRT target by op signature, from single-op slices (see ``graph.tflite_slice``).

    Seeded from the op profiles already stored for the target, so a resumed or a new
    campaign does not time the same operator twice.
    """

    def __init__(self, times_us: dict[str, float] | None = None, min_times_us: dict[str, float] | None = None):
        self.times_us: dict[str, float] = dict(times_us or {})  # median run per signature
        self.min_times_us: dict[str, float] = dict(min_times_us or {})  # fastest run, where timed with it
        self.failed: set[str] = set()

    @classmethod
    def from_store(cls, store: Store, target: Target) -> OpTimes:
        times: dict[str, float] = {}
        fastest: dict[str, float] = {}
        for row in store.measurements(target, status="ok"):
            for p in (row.measurement.node_profile if row.measurement else ()):
                if p.get("signature") and p.get("median_us") is not None:
                    times.setdefault(str(p["signature"]), float(p["median_us"]))
                    if p.get("min_us") is not None:
                        fastest.setdefault(str(p["signature"]), float(p["min_us"]))
        return cls(times, fastest)

    def measure(self, session, target: Target, path: Path, graph, workdir: Path,
                settings: BenchSettings = SLICE_BENCH) -> tuple[tuple[dict[str, Any], ...], float]:
        """The model's per-node profile, and the device seconds spent timing the operators not timed yet.

        A slice the device rejects is skipped (the model keeps its other operators' times);
        a lost link propagates, and the item is measured again on resume.
        """
        from .graph import read_model
        from .graph.tflite_slice import distinct_slices, op_profile

        kernels = list(graph.kernels)
        device_s = 0.0
        try:
            slices = list(distinct_slices(path, kernels, skip=set(self.times_us) | self.failed))
        except Exception as exc:  # noqa: BLE001 - an unsliceable model still has its end-to-end time
            log.warning("cannot cut %s into op slices: %s", path.name, exc)
            return (), device_s
        for sl in slices:
            sl_path = workdir / f"slice-{sl.signature}.tflite"
            sl_path.write_bytes(sl.content)
            try:
                remote = session.stage_model(sl_path)
                res = session.bench(remote, **bench_args(target, read_model(sl_path), settings))
            except ConnectionLostError:
                raise
            except (AgentError, ModelFileError) as exc:
                log.debug("op slice %s failed: %s", sl.signature, exc)
                self.failed.add(sl.signature)
                continue
            finally:
                sl_path.unlink(missing_ok=True)
            self.times_us[sl.signature] = float(res["stats"]["median_ms"]) * 1000.0
            if res["stats"].get("min_ms") is not None:
                self.min_times_us[sl.signature] = float(res["stats"]["min_ms"]) * 1000.0
            device_s += float(res.get("total_secs") or 0.0)
        return _mark_folded(op_profile(kernels, self.times_us, self.min_times_us), kernels), device_s


def _mark_folded(profile: tuple[dict[str, Any], ...], kernels: list) -> tuple[dict[str, Any], ...]:
    """Name, on each PAD that XNNPACK folds into a convolution, that convolution: the PAD's
    slice time is a copy the whole model never makes (``fusion.xnnpack_kernels``)."""
    from .fusion import xnnpack_kernels

    into = {pad: k.name for k in xnnpack_kernels(kernels) for pad in k.attrs.get("covers", ())}
    return tuple({**p, "folded_into": into[p["name"]]} if p["name"] in into else p for p in profile)
