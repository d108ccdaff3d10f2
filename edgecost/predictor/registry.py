"""Finding the profile for a target: the user's trained profiles first, then shipped ones."""

from __future__ import annotations

import functools
from pathlib import Path

from .. import paths
from ..errors import NoProfileError
from ..records import Target
from .profile import SUFFIX, Profile, profile_filename, target_from_filename


def profile_dirs() -> list[Path]:
    return [paths.profiles_dir(), paths.shipped_models_dir()]


def user_profile_path(target: Target) -> Path:
    return paths.profiles_dir() / profile_filename(target)


def available(device: str | None = None) -> dict[Target, Path]:
    """Every profile found, user profiles shadowing shipped ones for the same target."""
    found: dict[Target, Path] = {}
    for d in reversed(profile_dirs()):
        if not d.is_dir():
            continue
        for p in sorted(d.glob(f"*{SUFFIX}")):
            t = target_from_filename(p.name)
            if t is not None and (device is None or t.device == device):
                found[t] = p
    return found


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int) -> Profile:
    return Profile.load(path)


def load_profile(path: str | Path) -> Profile:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _load_cached(str(p), mtime)


def find_profile(target: Target) -> Profile:
    """The profile for exactly this target, or a NoProfileError naming the command that makes one."""
    profiles = available(target.device)
    if target in profiles:
        return load_profile(profiles[target])
    others = ", ".join(sorted(t.key for t in profiles))
    hint = (f"run `edgecost profile --device {target.device} --runtime {target.runtime} --threads {target.threads}`"
            " to measure and fit one")
    if others:
        hint += f" (profiles exist for: {others})"
    raise NoProfileError(f"no profile for target {target.key}", hint)


def shipped_devices() -> dict[str, Target]:
    """Devices that have a shipped profile, with their first target as default."""
    out: dict[str, Target] = {}
    d = paths.shipped_models_dir()
    if d.is_dir():
        for p in sorted(d.glob(f"*{SUFFIX}")):
            t = target_from_filename(p.name)
            if t is not None:
                # Prefer the 1-thread fp32 batch-1 target as a device's default.
                cur = out.get(t.device)
                if cur is None or (t.threads, t.batch) < (cur.threads, cur.batch):
                    out[t.device] = t
    return out


def shipped_device_defaults(name: str) -> Target | None:
    return shipped_devices().get(name)
