"""``read_model``: one entry point for model files, dispatching on their content."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ..errors import ModelFileError
from ._common import AnnotatedGraph, sha256_hex

TFLITE_IDENTIFIER = b"TFL3"


def sniff_format(data: bytes) -> str:
    """``"tflite"`` when the bytes carry the TFLite flatbuffer identifier (bytes 4..8), else ``"onnx"``."""
    return "tflite" if data[4:8] == TFLITE_IDENTIFIER else "onnx"


def read_bytes(path: Union[str, Path]) -> tuple[Path, bytes]:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileError(f"model file '{p}' does not exist", "check the path")
    if p.is_dir():
        raise ModelFileError(f"'{p}' is a folder, not a model file", "pass the .onnx or .tflite file inside it")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file '{p}': {exc.strerror or exc}",
                             "check its permissions") from None
    if not data:
        raise ModelFileError(f"model file '{p}' is empty (0 bytes)", "export the model again")
    return p, data


def read_model(path: Union[str, Path], input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> AnnotatedGraph:
    """Read an ONNX or TFLite model file into a :class:`~edgecost.records.ModelGraph`.

    The format is decided by the content (the ``TFL3`` flatbuffer identifier), not the
    suffix.  ``input_shapes`` fixes dynamic input dimensions, e.g. ``{"x": (1, 3, 224, 224)}``.
    ``content_hash`` is the sha256 of the file's bytes (external ONNX data files are not hashed).
    """
    p, data = read_bytes(path)
    fmt = sniff_format(data)
    if fmt == "tflite":
        from .tflite import read_tflite_bytes

        return read_tflite_bytes(data, input_shapes, source=str(p), content_hash=sha256_hex(data))
    if p.suffix.lower() == ".tflite":
        raise ModelFileError(
            f"'{p}' is not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8)",
            "the file is corrupt or not a .tflite model; convert the model again",
        )
    from .onnx_reader import read_onnx_bytes

    return read_onnx_bytes(data, input_shapes, source=str(p), base_dir=str(p.parent),
                           content_hash=sha256_hex(data))
