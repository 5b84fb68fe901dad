"""Per-chip results on disk, so an interrupted run continues where it stopped."""

from __future__ import annotations

import json
import re
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError


class ResumeStore:
    """Per (query, chip) results on disk, so an interrupted run continues where it stopped."""

    def __init__(self, directory, manifest: dict):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "manifest.json"
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = None
            if old is not None and old != manifest:
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise ConfigError(
                    f"{self.dir} holds results of a different run (differs in: {', '.join(diff)}); "
                    "use another resume_dir or delete it"
                )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(path)

    def _path(self, query: str, chip_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", query).strip("_")[:40] or "query"
        digest = format(abs(hash_text(query)), "x")[:8]
        return self.dir / f"{slug}-{digest}" / f"{chip_id}.npz"

    def load(self, query: str, chip_id: str):
        """``(mask, reasoning)`` saved for this query and chip (mask H x W bool), or None if there is none."""
        path = self._path(query, chip_id)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(v) for v in z["shape"])
                mask = np.unpackbits(z["mask"])[: shape[0] * shape[1]].reshape(shape).astype(bool)
                return mask, str(z["reasoning"])
        except Exception:  # a half-written or corrupt file: recompute that chip
            warnings.warn(f"ignoring unreadable resume file {path}; the chip will be recomputed", stacklevel=2)
            return None

    def save(self, query: str, chip_id: str, mask: np.ndarray, reasoning: str) -> None:
        """Save a chip's mask (H x W bool, bit-packed) and reasoning; written atomically through a temporary file."""
        path = self._path(query, chip_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, mask=np.packbits(mask.ravel()), shape=np.array(mask.shape),
                                reasoning=np.array(reasoning))
        tmp.replace(path)


def hash_text(text: str) -> int:
    """A hash of ``text`` that is stable across processes (unlike ``hash``)."""
    return zlib.crc32(text.encode("utf-8"))
