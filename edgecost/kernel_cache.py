"""A cache of executed-kernel lists, so predicting a model again skips ONNX Runtime's optimizer.

Producing a model's executed kernels means reading the file, hashing it and running ORT's
graph optimizer on the host: tens of milliseconds for a MobileNet, far more than the
predictor itself.  NAS loops and ``compare`` predict the same files many times, so the
kernels are kept

* in memory, keyed by the file's path, size and modification time (no re-read, no hash);
* on disk under :func:`edgecost.paths.cache_dir`, keyed by the file's content hash, the
  runtime, the ORT level and version and the input shapes, so a new process can reuse them.

Entries are derived data: a corrupt or unreadable entry is ignored and rebuilt, and a
failed write only costs the speed-up.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from . import paths
from .records import KernelRecord

FORMAT_VERSION = 1
MEMORY_ENTRIES = 1024

_lock = threading.Lock()
_memory: OrderedDict[Hashable, Any] = OrderedDict()


def file_key(path: str | Path, *extra: Hashable) -> tuple[Hashable, ...] | None:
    """A key that changes whenever the file at ``path`` does (None if it cannot be stat'ed)."""
    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    return (str(p), st.st_size, st.st_mtime_ns, *extra)


def memo(key: Hashable | None, build: Callable[[], Any]) -> Any:
    """``build()``'s value, remembered under ``key`` (not remembered when ``key`` is None)."""
    if key is None:
        return build()
    with _lock:
        if key in _memory:
            _memory.move_to_end(key)
            return _memory[key]
    value = build()
    with _lock:
        _memory[key] = value
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return value


def clear_memory() -> None:
    with _lock:
        _memory.clear()


def disk_key(content_hash: str, **facts: Any) -> str:
    blob = json.dumps({"v": FORMAT_VERSION, "hash": content_hash, **facts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _entry(key: str) -> Path:
    return paths.cache_dir() / "executed-kernels" / key[:2] / f"{key}.json.gz"


def load_kernels(key: str) -> list[KernelRecord] | None:
    try:
        with gzip.open(_entry(key), "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
        if doc.get("format_version") != FORMAT_VERSION:
            return None
        return [KernelRecord.from_dict(d) for d in doc["kernels"]]
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def save_kernels(key: str, kernels: list[KernelRecord]) -> None:
    target = _entry(key)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as fh:
            json.dump({"format_version": FORMAT_VERSION, "kernels": [k.to_dict() for k in kernels]}, fh,
                      default=_plain)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError):
        try:
            tmp.unlink()
        except OSError:
            pass


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__}")


def cached_kernels(content_hash: str, facts: dict[str, Any], build: Callable[[], list[KernelRecord]]
                   ) -> list[KernelRecord]:
    """Kernels for (content hash, facts) from memory, then disk, else ``build()`` and keep them."""
    key = disk_key(content_hash, **facts)

    def from_disk_or_build() -> list[KernelRecord]:
        found = load_kernels(key)
        if found is not None:
            return found
        built = build()
        save_kernels(key, built)
        return built

    return memo(("kernels", key), from_disk_or_build)
