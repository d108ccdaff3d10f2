"""Where edgecost keeps its files.

``EDGECOST_HOME`` (if set) holds everything: ``devices.toml``, the SQLite store,
model artifacts, trained profiles and the cache.  Otherwise the XDG base directories are
used: config in ``$XDG_CONFIG_HOME/edgecost``, data in ``$XDG_DATA_HOME/edgecost`` and
rebuildable cache in ``$XDG_CACHE_HOME/edgecost``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def home_override() -> Path | None:
    value = os.environ.get("EDGECOST_HOME")
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    return home_override() or _xdg("XDG_CONFIG_HOME", ".config") / "edgecost"


def data_dir() -> Path:
    return home_override() or _xdg("XDG_DATA_HOME", ".local/share") / "edgecost"


def store_path() -> Path:
    return data_dir() / "edgecost.sqlite"


def artifacts_dir() -> Path:
    """Content-addressed copies of every measured model (``<sha256>.<ext>``)."""
    return data_dir() / "artifacts"


def profiles_dir() -> Path:
    """Profiles trained from this user's measurements."""
    return data_dir() / "profiles"


def inventory_path() -> Path:
    return config_dir() / "devices.toml"


def _shipped_root() -> Path:
    installed = _PACKAGE_DIR / "_shipped"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent  # a source checkout: models/ and device_agents/ sit beside edgecost/


def shipped_models_dir() -> Path:
    """Profiles and example models shipped with edgecost (the repository's ``models/``)."""
    return _shipped_root() / "models"


def agent_path() -> Path:
    """The self-contained device agent file that is copied to devices."""
    return _shipped_root() / "device_agents" / "edgecost_agent.py"


def cache_dir() -> Path:
    """Derived data that can be rebuilt at any time (executed-kernel lists of predicted models)."""
    override = home_override()
    return override / "cache" if override else _xdg("XDG_CACHE_HOME", ".cache") / "edgecost"
