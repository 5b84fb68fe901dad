"""Typed errors. Every message says what is wrong and what to do about it."""

from __future__ import annotations


class SociogeoError(Exception):
    """Base class of every error sociogeo raises on purpose."""


class InvalidAreaError(SociogeoError, ValueError):
    """An area of interest is malformed: reversed or out-of-range coordinates, wrong geometry type."""


class AreaTooLargeError(InvalidAreaError):
    """An area exceeds the configured size limit (``sociogeo.options.max_area_km2``)."""


class DependencyNotFoundError(SociogeoError, ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""

    def __init__(self, package: str, extra: str, purpose: str | None = None):
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{package} is not installed{what}. Install it with: pip install 'sociogeo[{extra}]'"
        )


class ProviderError(SociogeoError, ValueError):
    """A tile provider name or URL template cannot be resolved."""


class TileFetchError(SociogeoError):
    """Tiles could not be fetched (unreachable server, or too many tiles missing)."""


class OfflineError(TileFetchError):
    """Offline mode was requested and the cache does not hold what is needed."""


class CacheError(SociogeoError):
    """The tile cache directory cannot be used (not writable, not a directory)."""


class OSMDataError(SociogeoError):
    """OpenStreetMap data could not be loaded (bad file, Overpass unreachable, empty area)."""


class ModelNotFoundError(SociogeoError, OSError):
    """Model weights cannot be found locally or downloaded."""


class DatasetNotFoundError(SociogeoError, FileNotFoundError):
    """A dataset is missing or not laid out as expected."""


class ConfigError(SociogeoError, ValueError):
    """A configuration file or argument is invalid."""


class InvalidImageError(ConfigError):
    """An image is not what the step needs (H x W x 3 uint8 RGB); the message gives its shape and dtype."""


class VLMServerError(SociogeoError):
    """An OpenAI-compatible server could not be reached or gave an unusable answer.

    ``url`` is the endpoint called, ``status`` the HTTP status (None when no response came).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None):
        self.url = url
        self.status = status
        super().__init__(message)


class VLMBatchError(VLMServerError):
    """Some requests of a batch failed. ``results`` holds every answer in request order (None
    where the request failed); ``errors`` maps each failed index to its :class:`VLMServerError`.
    """

    def __init__(self, results: list, errors: dict[int, VLMServerError]):
        self.results = results
        self.errors = errors
        first_index = min(errors)
        first = errors[first_index]
        failed = sorted(errors)
        shown = ", ".join(str(i) for i in failed[:20]) + (" ..." if len(failed) > 20 else "")
        super().__init__(
            f"{len(failed)} of {len(results)} VLM requests failed (indices {shown}); "
            f"request {first_index}: {first}",
            url=first.url,
            status=first.status,
        )


class BadSampleError(SociogeoError, ValueError):
    """One sample cannot be read (missing file, undecodable image, malformed question.json)."""


class MissingTilesWarning(UserWarning):
    """Some tiles could not be fetched; their pixels are nodata (0) and invalid in the mask."""


class ResolutionWarning(UserWarning):
    """The imagery grid is much finer or coarser than what the model was trained on, or than the
    imagery itself; the message says which zoom to choose instead.
    """


__all__ = [
    "SociogeoError",
    "InvalidAreaError",
    "AreaTooLargeError",
    "DependencyNotFoundError",
    "ProviderError",
    "TileFetchError",
    "OfflineError",
    "CacheError",
    "OSMDataError",
    "ModelNotFoundError",
    "DatasetNotFoundError",
    "ConfigError",
    "InvalidImageError",
    "VLMServerError",
    "VLMBatchError",
    "BadSampleError",
    "MissingTilesWarning",
    "ResolutionWarning",
]
