"""Convert torch modules to the files runtimes load: ONNX, TFLite (LiteRT) and TorchScript.

Every converter writes static shapes (those of ``example_inputs``) and, with
``check=True``, runs the written file in its runtime (1 thread) on random inputs and
compares it with torch; a disagreement or a failing exporter raises
:class:`~edgecost.errors.ConversionError` with a one-line message.

Files are byte-deterministic for the same module and inputs (the store hashes them):
both ONNX exporters and litert-torch are deterministic as they are; ``.pt`` archives are
made so here (see :func:`canonical_torchscript_archive`).

Only this module and :mod:`edgecost.zoo` import torch; import them lazily from code that
must run without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickletools
import re
import struct
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import ConversionError, UsageError

if TYPE_CHECKING:
    from .zoo.spec import ModelSpec

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "dynamo", "torchscript")
FORMATS = {"onnx": ".onnx", "tflite": ".tflite", "torchscript": ".pt", "torch": ".pt"}  # torch = torchscript
DEFAULT_OPSET = 18  # ONNX Runtime >= 1.14 runs it; pass opset=13..17 for older runtimes (TorchScript exporter)
CHECK_SEED = 0
MAX_REASON_CHARS = 240
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Inputs = Sequence[torch.Tensor]


@dataclass(frozen=True)
class Tolerance:
    """Allowed |converted - torch| per element: ``atol_scale`` × max|torch output| + ``rtol`` × |torch|."""

    rtol: float
    atol_scale: float


ONNX_TOLERANCE = Tolerance(rtol=1e-3, atol_scale=1e-4)
TFLITE_TOLERANCE = Tolerance(rtol=1e-3, atol_scale=1e-3)  # XNNPACK reorders sums more freely
TORCHSCRIPT_TOLERANCE = Tolerance(rtol=1e-4, atol_scale=1e-5)  # same kernels; graph fusion may reorder


# --- ONNX ----------------------------------------------------------------------------


def to_onnx(module: torch.nn.Module, example_inputs: torch.Tensor | Inputs, path: str | os.PathLike,
            *, exporter: str = "auto", opset: int | None = None,
            input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
            check: bool = True, verbose: bool = False) -> Path:
    """Export ``module`` (put in eval mode) to an ONNX file with static shapes.

    ``exporter``: ``"dynamo"`` / ``"auto"`` use ``torch.export`` (0.4–5 s a model on a laptop
    core) and fall back to the TorchScript exporter if that fails; ``"torchscript"`` uses the
    TorchScript exporter directly (3 ms for one op, 0.1–0.7 s for an ImageNet network; what
    campaigns use).  ``opset``
    defaults to :data:`DEFAULT_OPSET`.  Inputs are named ``input`` (``input_0..n`` when
    several) and outputs ``output`` (``output_0..n``) unless names are given.
    """
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}", f"use one of: {', '.join(EXPORTERS)}")
    inputs = _as_tuple(example_inputs)
    path = _prepare_path(path)
    module = module.eval()
    names_in = list(input_names) if input_names else _default_names("input", len(inputs))
    if output_names:
        names_out = list(output_names)
    else:  # one forward pass to count the outputs
        names_out = _default_names("output", len(_reference(module, inputs)))
    opset = DEFAULT_OPSET if opset is None else int(opset)
    what = type(module).__name__
    started = time.perf_counter()
    used = exporter
    if exporter == "torchscript":
        _export_torchscript(module, inputs, path, opset, names_in, names_out, verbose)
    else:
        try:
            _export_dynamo(module, inputs, path, opset, names_in, names_out, verbose)
            used = "dynamo"
        except ConversionError as dynamo_error:
            log.warning("the dynamo ONNX exporter failed on %s (%s); falling back to the TorchScript exporter",
                        what, dynamo_error.message)
            try:
                _export_torchscript(module, inputs, path, opset, names_in, names_out, verbose)
            except ConversionError as torchscript_error:
                raise ConversionError(
                    f"could not export {what} to ONNX with either exporter: {dynamo_error.message}; "
                    f"{torchscript_error.message}",
                    "the module uses an op or control flow neither exporter supports: rewrite that part") from None
            used = "torchscript"
    log.info("exported %s to %s with the %s exporter (opset %d) in %.2f s",
             what, path, used, opset, time.perf_counter() - started)
    if check:
        check_onnx(path, module, inputs)
    return path


def _export_torchscript(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int,
                        input_names: list[str], output_names: list[str], verbose: bool) -> None:
    try:
        with _quiet_native(verbose), _quiet_python(verbose), _plain_attention(), torch.no_grad():
            torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              do_constant_folding=True, verbose=False)
    except Exception as exc:  # the exporter raises many unrelated types; each becomes one ConversionError
        raise ConversionError(f"TorchScript exporter failed: {_reason(exc)}",
                              "try exporter='dynamo', another opset, or simplify the module") from exc


def _export_dynamo(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int,
                   input_names: list[str], output_names: list[str], verbose: bool) -> None:
    try:
        with _quiet_native(verbose), _quiet_python(verbose):
            torch.onnx.export(module, inputs, str(path), dynamo=True, external_data=False,
                              opset_version=opset, input_names=input_names, output_names=output_names,
                              verbose=verbose, report=False)
    except Exception as exc:  # torch.export and onnxscript raise many types; each becomes one ConversionError
        raise ConversionError(f"dynamo exporter failed: {_reason(exc)}",
                              "try exporter='torchscript' or simplify the module") from exc


def check_onnx(path: str | os.PathLike, module: torch.nn.Module, example_inputs: torch.Tensor | Inputs,
               tolerance: Tolerance = ONNX_TOLERANCE) -> None:
    """Run ``path`` in ONNX Runtime (CPU, 1 thread) and compare it with ``module`` on random inputs."""
    import onnxruntime as ort

    path = Path(path)
    inputs = _random_like(_as_tuple(example_inputs))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs)}
        outputs = session.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own Exception subclasses (Fail, InvalidGraph, ...)
        _discard(path)
        raise ConversionError(f"ONNX Runtime cannot run the exported {path.name}: {_reason(exc)} (file removed)",
                              "try the other exporter or another opset") from exc
    _compare("ONNX Runtime", path, outputs, _reference(module, inputs), tolerance)


# --- TFLite / LiteRT -------------------------------------------------------------------


def to_tflite(module: torch.nn.Module, example_inputs: torch.Tensor | Inputs, path: str | os.PathLike,
              *, check: bool = True, verbose: bool = False) -> Path:
    """Convert ``module`` to a ``.tflite`` file with ``litert_torch`` (no TensorFlow, no onnx2tf).

    The file keeps torch's (NCHW) input layout.  ``verbose=False`` silences the converter's
    progress lines and native logs.
    """
    inputs = _as_tuple(example_inputs)
    path = _prepare_path(path)
    module = module.eval()
    started = time.perf_counter()
    try:
        with _quiet_native(verbose), _quiet_python(verbose), _litert_progress(verbose):
            import litert_torch

            litert_torch.convert(module, inputs).export(str(path))
    except ImportError as exc:
        raise ConversionError(f"litert-torch is not importable: {_reason(exc)}",
                              "install it with: pip install 'edgecost[torch]'") from exc
    except Exception as exc:  # the converter raises many unrelated types; each becomes one ConversionError
        raise ConversionError(f"litert-torch could not convert {type(module).__name__}: {_reason(exc)}",
                              "simplify the module (static shapes, standard ops) or use ONNX") from exc
    log.info("converted %s to %s in %.2f s", type(module).__name__, path, time.perf_counter() - started)
    if check:
        check_tflite(path, module, inputs)
    return path


def check_tflite(path: str | os.PathLike, module: torch.nn.Module, example_inputs: torch.Tensor | Inputs,
                 tolerance: Tolerance = TFLITE_TOLERANCE) -> None:
    """Run ``path`` in the LiteRT interpreter (1 thread, default delegates) and compare with ``module``."""
    path = Path(path)
    inputs = _random_like(_as_tuple(example_inputs))
    try:
        with _quiet_native(False):  # the interpreter logs delegate creation on stderr
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(path), num_threads=1)
            runner = interpreter.get_signature_runner()
            input_names = sorted(runner.get_input_details(), key=_trailing_number)
            result = runner(**{name: t.numpy() for name, t in zip(input_names, inputs)})
        outputs = [result[name] for name in sorted(result, key=_trailing_number)]
    except Exception as exc:  # the LiteRT interpreter raises ValueError/RuntimeError and more
        _discard(path)
        raise ConversionError(f"LiteRT cannot run the converted {path.name}: {_reason(exc)} (file removed)",
                              "convert to ONNX instead, or report the module") from exc
    _compare("LiteRT", path, outputs, _reference(module, inputs), tolerance)


# --- TorchScript (.pt) ----------------------------------------------------------------


def to_torchscript(module: torch.nn.Module, example_inputs: torch.Tensor | Inputs, path: str | os.PathLike,
                   *, check: bool = True) -> Path:
    """Trace ``module`` and save it as a TorchScript ``.pt`` archive (the torch runtime target).

    Made byte-deterministic by :func:`canonical_torchscript_archive` (TorchScript names
    module classes ``___torch_mangle_N`` from a process-wide counter, and writes a random
    serialization id).  The example inputs are not stored in the archive.
    """
    inputs = _as_tuple(example_inputs)
    path = _prepare_path(path)
    module = module.eval()
    buffer = io.BytesIO()  # saved under the fixed root name "archive/", not the file's name
    try:
        with _quiet_python(False), torch.no_grad():
            # Traced twice: in the second trace every class name is already taken, so all
            # classes are saved mangled, whatever this process traced before.
            torch.jit.trace(module, inputs, check_trace=False, _store_inputs=False)
            traced = torch.jit.trace(module, inputs, check_trace=False, _store_inputs=False)
            torch.jit.save(traced, buffer)
    except Exception as exc:  # tracing raises many unrelated types; each becomes one ConversionError
        raise ConversionError(f"could not trace {type(module).__name__} to TorchScript: {_reason(exc)}",
                              "export to ONNX instead, or simplify the module") from exc
    path.write_bytes(canonical_torchscript_archive(buffer.getvalue()))
    if check:
        try:
            with _quiet_python(False):
                loaded = torch.jit.load(str(path))
                with torch.no_grad():
                    outputs = [t.numpy() for t in _flat_tensors(loaded(*_random_like(inputs)))]
        except Exception as exc:  # torch.jit.load raises RuntimeError and more
            _discard(path)
            raise ConversionError(f"the saved TorchScript {path.name} does not load or run: {_reason(exc)}",
                                  "export to ONNX instead") from exc
        _compare("TorchScript", path, outputs, _reference(module, _random_like(inputs)), TORCHSCRIPT_TOLERANCE)
    return path


_MANGLE = re.compile(rb"___torch_mangle_(\d+)")
_ZIP_ALIGNMENT = 64  # torch aligns record data to 64 bytes (for mmap); kept so
_ZIP_PADDING_HEADER = 0x4246  # "FB", the extra-field id torch's writer pads with


def canonical_torchscript_archive(archive: bytes) -> bytes:
    """``archive`` (a ``torch.jit.save`` zip) rewritten so that it depends only on the module.

    * ``___torch_mangle_N`` class names are renumbered 0, 1, 2, ... in order of first use
      in ``data.pkl`` (N comes from a counter that runs over the whole process);
    * ``*.debug_pkl`` records (source ranges for error messages, whose offsets would no
      longer match) are dropped;
    * ``.data/serialization_id`` (random) becomes digits of a hash of the other records;
    * entries are written uncompressed with fixed timestamps, data aligned to 64 bytes.

    Returns ``archive`` unchanged if it holds a mangled name anywhere other than code text
    and pickle GLOBAL opcodes (then renaming could corrupt it).
    """
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        records = [(info.filename, zf.read(info)) for info in zf.infolist()
                   if not info.filename.endswith(".debug_pkl")]
    textual = [(name, data) for name, data in records if name.endswith((".py", ".pkl"))]
    if not all(_mangles_only_in_globals(data) for name, data in textual if name.endswith(".pkl")):
        log.warning("TorchScript archive left as saved: a class name is stored where it cannot be renamed")
        return archive
    numbering: dict[bytes, int] = {}
    for name, data in sorted(textual, key=lambda r: (not r[0].endswith("/data.pkl"), r[0])):
        for match in _MANGLE.finditer(name.encode() + b"\n" + data):
            numbering.setdefault(match.group(1), len(numbering))

    def rename(text: bytes) -> bytes:
        return _MANGLE.sub(lambda m: b"___torch_mangle_%d" % numbering[m.group(1)], text)

    renamed = [(rename(name.encode()).decode(), rename(data) if name.endswith((".py", ".pkl")) else data)
               for name, data in records]
    digest = hashlib.sha256()
    for name, data in renamed:
        if not name.endswith(".data/serialization_id"):
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    serialization_id = str(int(digest.hexdigest(), 16))[:40].encode()
    renamed = [(name, serialization_id if name.endswith(".data/serialization_id") else data)
               for name, data in renamed]
    return _write_aligned_zip(renamed)


def _mangles_only_in_globals(pickled: bytes) -> bool:
    """Whether every mangled name in a pickle sits in a GLOBAL opcode (newline-ended text)."""
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if opcode.name != "GLOBAL" and isinstance(arg, (str, bytes)) and (
                    b"___torch_mangle_" in (arg.encode() if isinstance(arg, str) else arg)):
                return False
    except ValueError:  # not a plain pickle: leave the archive alone
        return False
    return True


def _write_aligned_zip(records: Sequence[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 0
            info.external_attr = 0
            header_end = out.tell() + 30 + len(name.encode())
            padding = (-(header_end + 4)) % _ZIP_ALIGNMENT
            info.extra = struct.pack("<HH", _ZIP_PADDING_HEADER, padding) + b"Z" * padding
            zf.writestr(info, data)
    return out.getvalue()


# --- zoo specs ------------------------------------------------------------------------


def export_spec(spec: ModelSpec, out_dir: str | os.PathLike, fmt: str = "onnx", exporter: str = "torchscript",
                *, opset: int | None = None, check: bool = True) -> Path:
    """Build the zoo model of ``spec`` and write it as ``<out_dir>/<spec_id>.<onnx|tflite|pt>``.

    ``fmt``: ``"onnx"``, ``"tflite"``, or ``"torchscript"`` (alias ``"torch"``, a ``.pt``
    archive for the torch runtime).  ``exporter`` applies to ONNX only; the default is the
    fast TorchScript exporter.
    """
    from . import zoo

    if fmt not in FORMATS:
        raise UsageError(f"unknown model format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    family = zoo.get_family(spec.family)
    module = family.build(spec)
    example = family.example_input(spec)
    path = Path(out_dir) / f"{spec.spec_id}{FORMATS[fmt]}"
    if fmt == "onnx":
        return to_onnx(module, example, path, exporter=exporter, opset=opset, check=check,
                       output_names=["output"])  # every zoo model has one output
    if fmt == "tflite":
        return to_tflite(module, example, path, check=check)
    return to_torchscript(module, example, path, check=check)


# --- helpers --------------------------------------------------------------------------


def _as_tuple(example_inputs: torch.Tensor | Inputs) -> tuple[torch.Tensor, ...]:
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UsageError("example_inputs must be a tensor or a sequence of tensors",
                         "pass e.g. torch.randn(1, 3, 224, 224)")
    return inputs


def _prepare_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _default_names(stem: str, count: int) -> list[str]:
    return [stem] if count == 1 else [f"{stem}_{i}" for i in range(count)]


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _flat_tensors(item)]
    return []


def _random_like(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Inputs of the same shapes and dtypes, drawn from a fixed seed."""
    generator = torch.Generator().manual_seed(CHECK_SEED)
    drawn = []
    for t in inputs:
        if t.dtype.is_floating_point:
            drawn.append(torch.randn(t.shape, generator=generator, dtype=t.dtype))
        elif t.dtype == torch.bool:
            drawn.append(torch.rand(t.shape, generator=generator) > 0.5)
        else:
            drawn.append(torch.randint(0, 8, t.shape, generator=generator, dtype=t.dtype))
    return tuple(drawn)


def _reference(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """The module's outputs in torch, flattened."""
    try:
        with torch.no_grad():
            return [t.detach().numpy() for t in _flat_tensors(module(*inputs))]
    except Exception as exc:  # the module's own forward failed; say so in one line
        raise ConversionError(f"{type(module).__name__} fails on inputs of shapes "
                              f"{[tuple(t.shape) for t in inputs]}: {_reason(exc)}",
                              "pass example inputs the module accepts") from exc


def _compare(runtime: str, path: Path, outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray],
             tolerance: Tolerance) -> None:
    if len(outputs) != len(reference):
        _discard(path)
        raise ConversionError(f"{runtime} gives {len(outputs)} outputs for {path.name}, torch gives "
                              f"{len(reference)} (file removed)", "report the module; the conversion is wrong")
    for index, (got, want) in enumerate(zip(outputs, reference)):
        got = np.asarray(got)
        if got.shape != want.shape:
            _discard(path)
            raise ConversionError(f"{runtime} output {index} of {path.name} has shape {got.shape}, torch "
                                  f"{want.shape} (file removed)", "report the module; the conversion is wrong")
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        atol = tolerance.atol_scale * max(scale, 1e-6)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        if np.allclose(got, want, rtol=tolerance.rtol, atol=atol, equal_nan=True):
            continue
        max_abs = float(np.nanmax(diff)) if diff.size else 0.0
        _discard(path)
        raise ConversionError(
            f"{runtime} output {index} of {path.name} disagrees with torch: max abs error {max_abs:.3g}, "
            f"max rel error {max_abs / max(scale, 1e-12):.3g} of the output magnitude {scale:.3g} "
            f"(allowed {atol:.3g} + {tolerance.rtol:g}×|torch|; file removed)",
            "the converter mistranslated an op: try the other ONNX exporter or another opset, "
            "or pass check=False to keep the file anyway")


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _reason(exc: BaseException) -> str:
    """One short line naming what went wrong, from the innermost useful exception."""
    inner = exc
    while inner.__cause__ is not None and not isinstance(inner.__cause__, ConversionError):
        inner = inner.__cause__
    text = _ANSI.sub("", str(inner))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    first = lines[0] if lines else ""
    reason = f"{type(inner).__name__}: {first}" if first else type(inner).__name__
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 1] + "…"


def _trailing_number(name: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else -1, name)


class _SharedQuiet:
    """A process-wide change (file descriptors, ``sys.stdout``, warning filters) shared by
    concurrent exports: the first thread in makes it, the last one out undoes it.

    Saving and restoring per thread is wrong when campaigns export in parallel threads
    (``edgecost profile --devices a,b``): a thread that enters while another is silenced
    saves the *silenced* state and restores it last, leaving stdout/stderr in a scratch
    file for good.
    """

    def __init__(self, enter, leave):
        self._enter, self._leave = enter, leave
        self._lock = threading.Lock()
        self._depth = 0
        self._token: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._token = self._enter()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    token, self._token = self._token, None
                    self._leave(token)


def _python_quiet_enter() -> Any:
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.simplefilter("ignore")
    stdout, sys.stdout = sys.stdout, io.StringIO()
    return level, catcher, stdout


def _python_quiet_leave(token: Any) -> None:
    level, catcher, stdout = token
    sys.stdout = stdout
    catcher.__exit__(None, None, None)
    logging.getLogger("torch.onnx").setLevel(level)


def _native_quiet_enter() -> Any:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors (a windowless process): nothing to silence
        return None
    sink = tempfile.TemporaryFile()
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    return saved, sink


def _native_quiet_leave(token: Any) -> None:
    if token is None:
        return
    saved, sink = token
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)
        sink.close()


_PYTHON_QUIET = _SharedQuiet(_python_quiet_enter, _python_quiet_leave)
_NATIVE_QUIET = _SharedQuiet(_native_quiet_enter, _native_quiet_leave)


def _quiet_python(verbose: bool) -> contextlib.AbstractContextManager:
    """Silence exporters' Python warnings, progress prints and torch.onnx log chatter."""
    return contextlib.nullcontext() if verbose else _PYTHON_QUIET()


def _quiet_native(verbose: bool) -> contextlib.AbstractContextManager:
    """Send file descriptors 1 and 2 to a scratch file (native libraries log there directly)."""
    return contextlib.nullcontext() if verbose else _NATIVE_QUIET()


@contextlib.contextmanager
def _plain_attention() -> Iterator[None]:
    """Turn off ``nn.MultiheadAttention``'s fused inference kernel, which has no ONNX form."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


@contextlib.contextmanager
def _litert_progress(verbose: bool) -> Iterator[None]:
    """litert-torch prints progress unless ``LITERT_TORCH_SHOW_PROGRESS`` is off."""
    name = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(name)
    os.environ[name] = "y" if verbose else "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
