"""The Python API; the CLI is a thin layer over these functions.

```python
import edgecost
p = edgecost.predict("model.onnx", device="local")         # -> Prediction
m = edgecost.measure("model.onnx", device="local")         # -> Measurement (stored)
r = edgecost.profile(device="local", budget_minutes=10)    # -> CampaignResult
```
Nothing here imports torch unless a model has to be generated or converted.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .devices import Device, Inventory
from .errors import ModelFileError, UnknownDeviceError, UsageError
from .records import Measurement, ModelGraph, Prediction, Target

ShapeMap = dict[str, tuple[int, ...]]


# -- targets ----------------------------------------------------------------------


def resolve_target(
    device: str,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    batch: int | None = None,
    *,
    inventory: Inventory | None = None,
    allow_shipped: bool = False,
) -> tuple[Device | None, Target]:
    """The inventory entry (None for a device known only by a shipped profile) and the target."""
    inv = inventory or Inventory()
    if device in inv:
        dev = inv.get(device)
        return dev, dev.target(runtime, threads, precision, batch)
    if allow_shipped:
        from .predictor import registry

        defaults = registry.shipped_device_defaults(device)
        if defaults is not None:
            return None, Target(
                device=device,
                runtime=runtime or defaults.runtime,
                threads=threads if threads is not None else defaults.threads,
                precision=precision or defaults.precision,
                batch=batch if batch is not None else defaults.batch,
            )
    inv.get(device)  # raises UnknownDeviceError with the known names
    raise UnknownDeviceError(f"unknown device {device!r}")  # pragma: no cover


# -- models -----------------------------------------------------------------------


def model_kind(path: str | Path) -> str:
    """'onnx', 'tflite' or 'torch' from the file's content (and suffix for torch)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}", "check the path")
    if p.is_dir():
        raise ModelFileError(f"{p} is a directory, not a model file", "pass an .onnx or .tflite file")
    if p.suffix.lower() in (".pt", ".pt2"):
        return "torch"
    with p.open("rb") as fh:
        head = fh.read(8)
    return "tflite" if head[4:8] == b"TFL3" else "onnx"


def read_graph(path: str | Path, input_shapes: ShapeMap | None = None, batch: int | None = None) -> ModelGraph:
    """The kernel graph of a model file; torch files give a graph without kernels."""
    kind = model_kind(path)
    if kind == "torch":
        if not input_shapes:
            raise UsageError(f"{Path(path).name} is a torch model, which does not record its input shapes",
                             "pass --input-shape NAME=1x3x224x224 for each input, in order")
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        return ModelGraph(content_hash=digest, format="torch", kernels=(), inputs=dict(input_shapes),
                          outputs={}, source=str(path))
    from .kernel_cache import file_key, memo

    shapes_key = tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items()))
    return memo(file_key(path, "graph", shapes_key, batch), lambda: _read_graph(path, input_shapes, batch))


def _read_graph(path: str | Path, input_shapes: ShapeMap | None, batch: int | None) -> ModelGraph:
    from .errors import DynamicShapeError
    from .graph import read_model

    try:
        return read_model(path, input_shapes=input_shapes or None)
    except DynamicShapeError:
        fixed = _fill_batch(path, batch) if batch is not None and not input_shapes else None
        if fixed:
            return read_model(path, input_shapes=fixed)
        raise


def _fill_batch(path: str | Path, batch: int) -> ShapeMap | None:
    """Input shapes with a dynamic axis 0 set to ``batch``, if axis 0 is the only dynamic one."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the reader reports the real problem
        return None
    inits = {i.name for i in model.graph.initializer}
    out: ShapeMap = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = []
        for axis, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif axis == 0:
                dims.append(batch)
            else:
                return None
        out[inp.name] = tuple(dims)
    return out


# -- predict ----------------------------------------------------------------------


def predict(
    model: str | Path | Sequence[str | Path],
    device: str = "local",
    *,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    batch: int | None = None,
    input_shapes: ShapeMap | None = None,
    profile_path: str | Path | None = None,
) -> Prediction | list[Prediction]:
    """Predicted latency of one model (a Prediction) or several (a list), from the target's profile.

    Raises NoProfileError (naming the `edgecost profile` command) when the target was
    never profiled; a number is never invented.
    """
    from .predictor import registry

    _, target = resolve_target(device, runtime, threads, precision, batch, allow_shipped=True)
    many = not isinstance(model, (str, Path))
    paths = list(model) if many else [model]
    graphs = [read_graph(p, input_shapes, batch) for p in paths]  # bad input is reported before anything else
    profile = registry.load_profile(profile_path) if profile_path else registry.find_profile(target)
    out = [profile.predict_file(p, target, input_shapes=input_shapes, graph=g) for p, g in zip(paths, graphs)]
    return out if many else out[0]


# -- measure ----------------------------------------------------------------------


def measure(
    model: str | Path,
    device: str = "local",
    *,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    batch: int | None = None,
    input_shapes: ShapeMap | None = None,
    settings=None,
    store: Any = None,
    session: Any = None,
    facts: dict[str, Any] | None = None,
    save: bool = True,
) -> Measurement:
    """Measure a model on a device with the agent; the result is stored unless ``save=False``.

    With ``settings.profile_runs > 0`` the measurement carries per-kernel times: ONNX
    Runtime's per-node profile, or for a ``.tflite`` each distinct operator timed as a
    single-operator model (``edgecost.tflite_profile``).
    """
    from .bench import BenchSettings, bench_args, check_runtime_accepts, measurement_from_result
    from .store import Store
    from .transport import open_session

    dev, target = resolve_target(device, runtime, threads, precision, batch)
    kind = model_kind(model)
    if runtime is None and kind != "onnx":
        target = replace(target, runtime={"tflite": "tflite", "torch": "torch"}[kind])
    check_runtime_accepts(kind, target, model)
    graph = read_graph(model, input_shapes, batch)
    settings = settings or BenchSettings()
    own_session = session is None
    session = session or open_session(dev)
    try:
        if facts is None and own_session:
            facts = session.sysinfo()
        remote = session.stage_model(model)
        result = session.bench(remote, **bench_args(target, graph, settings))
        op_profile = _tflite_op_profile(session, target, Path(model), graph) \
            if target.runtime == "tflite" and settings.profile_runs > 0 else None
    finally:
        if own_session:
            session.close()
    m = measurement_from_result(result, graph.content_hash, target, facts)
    if op_profile is not None:
        m = replace(m, node_profile=op_profile)
    if save:
        st = store or Store()
        st.put_model(graph)
        if facts:
            st.put_device_facts(target.device, facts)
        st.add_measurement(m)
    return m


def _tflite_op_profile(session, target, path: Path, graph) -> tuple[dict[str, Any], ...]:
    import tempfile

    from .tflite_profile import OpTimes

    with tempfile.TemporaryDirectory(prefix="edgecost-slices-") as tmp:
        return OpTimes().measure(session, target, path, graph, Path(tmp))[0]


# -- profile ----------------------------------------------------------------------


def profile(
    device: str = "local",
    *,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    batch: int | None = None,
    budget_minutes: float = 10.0,
    settings=None,
    new: bool = False,
    max_items: int | None = None,
    train: bool = True,
    store: Any = None,
    on_event: Callable[..., None] | None = None,
    stop: threading.Event | None = None,
    max_reconnects: int = 8,
    prefetch: bool | None = None,
):
    """Run (or resume) a profiling campaign on a device, then train its profile.

    ``prefetch``: export the next model on the host while the device measures the current
    one (None: only when the device is another machine, see ``campaign.run_campaign``).

    A dropped link (SSH) reconnects with exponential backoff and resumes the campaign;
    nothing measured is lost or measured twice.  Host-key and authentication errors are
    not retried.
    """
    import time

    from .campaign import CampaignEvent, CampaignResult, run_campaign
    from .errors import AuthError, HostKeyError, TransportError
    from .store import Store
    from .transport import open_session

    dev, target = resolve_target(device, runtime, threads, precision, batch)
    if target.precision != "fp32":
        raise UsageError(f"profiling campaigns generate fp32 models; {target.precision} is not supported yet",
                         "profile with --precision fp32")
    st = store or Store()
    deadline = time.monotonic() + budget_minutes * 60.0
    total: CampaignResult | None = None
    attempts = 0
    # Items finished by attempts that a dropped link cut short (run_campaign returned nothing).
    cut_short = {"ok": 0, "failed": 0}
    while True:
        attempt = {"ok": 0, "failed": 0}

        def track(ev, attempt=attempt) -> None:
            if ev.kind in ("measured", "failed"):
                attempt["ok"], attempt["failed"] = ev.done_ok, ev.done_failed
            if on_event:
                on_event(ev)

        session = open_session(dev)
        try:
            done = _done(total) + cut_short["ok"] + cut_short["failed"]
            r = run_campaign(session, target, st, budget_s=max(0.0, deadline - time.monotonic()),
                             settings=settings, new=new and total is None and attempts == 0,
                             max_items=None if max_items is None else max(0, max_items - done),
                             on_event=track, stop=stop, prefetch=prefetch)
            total = _merge(total, r)
            break
        except (HostKeyError, AuthError):
            raise
        except TransportError as exc:
            cut_short["ok"] += attempt["ok"]
            cut_short["failed"] += attempt["failed"]
            attempts += 1
            if attempts > max_reconnects or time.monotonic() >= deadline:
                raise
            wait_s = min(30.0, 0.5 * 2 ** attempts)
            if on_event:
                on_event(CampaignEvent("warning", message=f"link to {target.device} lost ({exc}); "
                                                          f"reconnecting in {wait_s:.0f} s (try {attempts})"))
            if stop is not None and stop.wait(wait_s):
                break
            if stop is None:
                time.sleep(wait_s)
        finally:
            session.close(cleanup=True)
    if total is not None:
        total.measured += cut_short["ok"]
        total.failed += cut_short["failed"]
    if total is not None and train and st.count_measurements(target) > 0:
        from .predictor import train as trainer

        trainer.train_and_save(st, target)
    return total


def _done(r) -> int:
    return 0 if r is None else r.measured + r.failed


def _merge(a, b):
    if a is None:
        return b
    a.measured += b.measured
    a.failed += b.failed
    a.revisited += b.revisited
    a.skipped_already_done += b.skipped_already_done
    a.elapsed_s += b.elapsed_s
    a.device_seconds += b.device_seconds
    a.stopped_because = b.stopped_because
    a.warnings.extend(b.warnings)
    return a


def train(device: str = "local", *, runtime: str | None = None, threads: int | None = None,
          precision: str | None = None, batch: int | None = None, store: Any = None, statistic: str | None = None,
          drift: str | None = None):
    """Fit the target's profile from the store and save it; returns the saved path.

    ``statistic``: what the profile learns as a model's latency: ``"auto"`` (the default:
    whichever gives the profile that predicts networks best, cross-validated; a fit for each),
    ``"min"`` (its fastest timed run, the
    latency of the device when nothing else runs on it), ``"p10"`` or ``"median"`` (see
    ``edgecost.predictor.labels``).  ``drift``: ``"revisits"`` (the default: where the revisits
    show the device's speed moved during the campaign, every measurement is taken at its average
    speed, ``edgecost.predictor.drift``) or ``"none"``.
    """
    from .predictor import train as trainer
    from .predictor.labels import DEFAULT_DRIFT, DEFAULT_LATENCY_STATISTIC, check_drift
    from .store import Store

    _, target = resolve_target(device, runtime, threads, precision, batch)
    return trainer.train_and_save(store or Store(), target, statistic=statistic or DEFAULT_LATENCY_STATISTIC,
                                  drift=check_drift(drift or DEFAULT_DRIFT))
