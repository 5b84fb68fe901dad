"""Package-wide settings, readable and writable as ``sociogeo.options.<name>``.

Environment variables set the defaults, so scripts and CI can change behaviour without code:

- ``SOCIOGEO_CACHE_DIR``: tile and download cache (default: ``$XDG_CACHE_HOME/sociogeo`` or
  ``~/.cache/sociogeo``).
- ``SOCIOGEO_OFFLINE=1``: never touch the network; use cached tiles only.
- ``SOCIOGEO_PROGRESS=0``: silence every progress bar.
- ``SOCIOGEO_CACHE_DECODED=0``: cache tiles as the server sent them only, not also their decoded
  pixels (less disk, about 192 kB less per 256 px tile; a cached tile is then decoded on each read).
- ``SOCIOGEO_MAX_AREA_KM2``: largest area accepted without ``max_area_km2=`` (default 25 km²).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import defaults
from ._version import __version__ as _version


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def _env_limit(name: str, default: float) -> float:
    """A positive number from the environment; a bad value warns and leaves the default (an
    import must not fail because of an environment variable).
    """
    import math
    import warnings

    text = os.environ.get(name, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        warnings.warn(f"{name}={text!r} is not a positive number of km²; using {default:g}", stacklevel=2)
        return default
    return value


def _default_cache_dir() -> Path:
    if os.environ.get("SOCIOGEO_CACHE_DIR"):
        return Path(os.environ["SOCIOGEO_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sociogeo"


@dataclass
class Options:
    """Settings that apply to every call unless a function argument overrides them."""

    progress: bool = field(default_factory=lambda: _env_flag("SOCIOGEO_PROGRESS", True))
    offline: bool = field(default_factory=lambda: _env_flag("SOCIOGEO_OFFLINE", False))
    cache_dir: Path = field(default_factory=_default_cache_dir)
    # keep decoded pixels beside each cached tile: a warm read is a file read, not an image decode
    cache_decoded: bool = field(default_factory=lambda: _env_flag("SOCIOGEO_CACHE_DECODED", True))
    max_area_km2: float = field(
        default_factory=lambda: _env_limit("SOCIOGEO_MAX_AREA_KM2", defaults.MAX_AREA_KM2)
    )
    # Tile servers ask clients to identify themselves; never pretend to be a browser.
    user_agent: str = f"sociogeo/{_version} (+https://github.com/sociogeo/sociogeo)"
    max_workers: int = 8
    timeout_s: float = 20.0
    retries: int = 4
    backoff_s: float = 0.5  # seconds before the first retry of a tile; doubles with each retry

    def __setattr__(self, name, value):
        if name not in {f.name for f in fields(self)}:
            raise AttributeError(
                f"sociogeo.options has no setting {name!r}; "
                f"known: {', '.join(f.name for f in fields(self))}"
            )
        if name == "cache_dir" and value is not None:
            value = Path(value).expanduser()
        value = _checked(name, value)
        object.__setattr__(self, name, value)

    def offline_requested(self) -> bool:
        """Whether to stay off the network: ``offline`` here, or Hugging Face's ``HF_HUB_OFFLINE`` /
        ``TRANSFORMERS_OFFLINE`` set. Every downloader and model loader asks this.
        """
        flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        return bool(self.offline) or any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)

    @contextmanager
    def context(self, **changes):
        """Temporarily change settings: ``with sociogeo.options.context(progress=False): ...``."""
        old = {k: getattr(self, k) for k in changes}
        for k, v in changes.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)


# numeric settings: (smallest allowed, whether the smallest is allowed, whole numbers only)
_NUMBERS = {"max_area_km2": (0.0, False, False), "max_workers": (1, True, True), "timeout_s": (0.0, False, False),
            "retries": (0, True, True), "backoff_s": (0.0, True, False)}


def _checked(name: str, value):
    """``value`` for setting ``name``, or a ConfigError saying what the setting takes."""
    import math

    if name not in _NUMBERS:
        return value
    low, inclusive, whole = _NUMBERS[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    ok = not isinstance(value, bool) and (number >= low if inclusive else number > low)
    if whole:
        ok = ok and math.isfinite(number) and number.is_integer()
    if not ok:
        from .errors import ConfigError

        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"sociogeo.options.{name} must be {kind} {'>=' if inclusive else '>'} {low:g}, got {value!r}")
    return int(number) if whole else number


options = Options()


def set_progress(enabled: bool) -> None:
    """Switch every sociogeo progress bar on or off."""
    options.progress = bool(enabled)
