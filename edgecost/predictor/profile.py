"""A device profile: a trained predictor for one target, in one portable file.

The file is JSON (gzip-compressed when its name ends in ``.gz``): a model card (device
facts, runtime and version, training data, measured accuracy), how to obtain the target's
executed kernels, and the predictor's arrays.  No pickle: it loads with any NumPy.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProfileFormatError
from ..fusion import ExecutionSpec, executed_kernels
from ..records import KernelPrediction, KernelRecord, ModelGraph, Prediction, Target
from .model import LatencyPredictor

PROFILE_FORMAT = "edgecost-profile"
#: 2: the predictor's features are schema 2 (``edgecost.features.FEATURE_SCHEMA``).  An edgecost
#: that predates it would read such a file with its own schema-1 features and say nothing; the
#: version makes it refuse the file ("written by a newer edgecost") instead.  Version-1 files load.
PROFILE_FORMAT_VERSION = 2
SUFFIX = ".profile.json.gz"


def profile_filename(target: Target) -> str:
    return f"{target.device}__{target.runtime}__t{target.threads}__{target.precision}__b{target.batch}{SUFFIX}"


def target_from_filename(name: str) -> Target | None:
    if not name.endswith(SUFFIX):
        return None
    try:
        device, runtime, threads, precision, batch = name[: -len(SUFFIX)].split("__")
        return Target(device, runtime, int(threads[1:]), precision, int(batch[1:]))
    except (ValueError, Exception):  # noqa: BLE001 - any malformed name is simply not a profile
        return None


@dataclass
class Profile:
    card: dict[str, Any]
    execution: ExecutionSpec
    predictor: LatencyPredictor
    path: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> Target:
        return Target(**self.card["target"])

    @property
    def latency_statistic(self) -> str:
        """What the profile learned as latency; profiles trained before the choice existed learned the median."""
        return str((self.card.get("latency_statistic") or {}).get("name", "median"))

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else self.target.key

    # -- predicting ----------------------------------------------------------------

    def kernels_for(self, path: str | Path, graph: ModelGraph,
                    input_shapes: dict[str, tuple[int, ...]] | None = None) -> list[KernelRecord]:
        return executed_kernels(path, graph, self.execution, input_shapes)

    def predict_kernels(self, kernels: list[KernelRecord], model: str = "", target: Target | None = None
                        ) -> Prediction:
        ms, lo, hi, per_kernel = self.predictor.predict_one(kernels)
        kp = tuple(
            KernelPrediction(name=k.name, op_type=k.op_type, latency_ms=float(t),
                             covers=tuple(k.attrs.get("covers") or ()))
            for k, t in zip(kernels, per_kernel)
        )
        return Prediction(model=model, target=target or self.target, latency_ms=ms, low_ms=lo, high_ms=hi,
                          kernels=kp, profile=self.name, interval_coverage=self.predictor.coverage,
                          latency_statistic=self.latency_statistic)

    def predict_file(self, path: str | Path, target: Target | None = None,
                     input_shapes: dict[str, tuple[int, ...]] | None = None,
                     graph: ModelGraph | None = None) -> Prediction:
        from ..api import read_graph

        t = target or self.target
        graph = graph or read_graph(path, input_shapes, batch=t.batch)
        kernels = self.kernels_for(path, graph, input_shapes)
        return self.predict_kernels(kernels, model=str(path), target=t)

    # -- files -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "format_version": PROFILE_FORMAT_VERSION,
            "card": self.card,
            "execution": self.execution.to_dict(),
            "predictor": self.predictor.to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict(), separators=(",", ":")).encode()
        tmp = p.with_name(p.name + ".tmp")
        if p.name.endswith(".gz"):
            tmp.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        else:
            tmp.write_bytes(data)
        tmp.replace(p)  # atomic: a crash never leaves half a profile
        self.path = str(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        p = Path(path)
        try:
            raw = p.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            d = json.loads(raw)
        except FileNotFoundError:
            raise ProfileFormatError(f"profile file not found: {p}", "check the path") from None
        except (OSError, EOFError, ValueError) as exc:
            raise ProfileFormatError(f"{p} is not a readable edgecost profile ({exc.__class__.__name__})",
                                     "retrain it with `edgecost train` or reinstall edgecost") from None
        if not isinstance(d, dict) or d.get("format") != PROFILE_FORMAT:
            raise ProfileFormatError(f"{p} is not an edgecost profile", "pass a *.profile.json.gz file")
        if int(d.get("format_version", 0)) > PROFILE_FORMAT_VERSION:
            raise ProfileFormatError(f"{p} was written by a newer edgecost", "upgrade edgecost")
        try:
            return cls(card=d["card"], execution=ExecutionSpec.from_dict(d["execution"]),
                       predictor=LatencyPredictor.from_dict(d["predictor"]), path=str(p))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileFormatError(f"{p} is damaged or incompatible: {exc}",
                                     "retrain it with `edgecost train`") from None


def new_card(target: Target, **fields: Any) -> dict[str, Any]:
    from .. import __version__

    card = {"target": target.to_dict(), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "edgecost_version": __version__}
    card.update(fields)
    return card
