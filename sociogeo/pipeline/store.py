"""Every finished chip written to disk at once, as GeoParquet: the one resume mechanism.

A run keeps a folder of part files (``<output>.parts/`` next to the result file, or the folder
given as ``resume_dir``). Each part holds the chips of one batch, one row per (query, chip):
the chip's polygons (EPSG:3857), its packed mask, both stages' answer texts, the reasoning and
what the parser discarded. Parts are written under a temporary name and renamed when complete,
so a killed run leaves only whole parts behind; a rerun with the same output reads them, skips
the chips they hold and runs the rest. ``manifest.json`` records what the chips depend on (the
grid, chip size, models, imagery); a rerun with different settings is refused instead of mixing
results.

The folder is not trusted: a part is checked before it is used (its declared uncompressed size
before anything is decompressed, its column types, then its values: statuses, chip ids, mask
sizes), and one that fails is set aside (renamed ``*.unreadable``) with a warning, so its chips
run again. A manifest that cannot be read (damaged, not a JSON object, oversized) cannot vouch
for the parts, so they are set aside too (``*.unverified``) and every chip runs again.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError

MANIFEST = "manifest.json"
#: Columns of every part file, in order (``geometry`` is the chip's polygons in EPSG:3857).
COLUMNS = [
    "query", "chip_id", "row", "col", "col_off", "row_off", "width", "height", "status",
    "stage1_text", "stage2_text", "reasoning", "discarded", "mask", "mask_height", "mask_width", "geometry",
]
#: Chip outcomes: ``ok`` (reasoned), ``empty`` (no valid pixel: nothing to reason about).
STATUSES = ("ok", "empty")
_PART = re.compile(r"^part-(\d{6})\.parquet$")
_CHIP_ID = re.compile(r"^r\d{1,9}_c\d{1,9}$")
#: The largest manifest read (it is a few hundred bytes).
MAX_MANIFEST_BYTES = 1 << 20
#: The largest part used, uncompressed as its footer declares (a batch of chips is a few MB).
MAX_PART_BYTES = 1 << 30
_INTS = ("row", "col", "col_off", "row_off", "width", "height", "mask_height", "mask_width")
_TEXTS = ("query", "chip_id", "status", "stage1_text", "stage2_text", "reasoning", "discarded")
_MAX_SIDE = 1 << 16  # pixels: a chip or mask side beyond this is not one this code wrote
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text) -> str:
    """Model text made safe for every file format: lone surrogates become U+FFFD, NUL is dropped."""
    text = "" if text is None else str(text)
    return _SURROGATES.sub("\ufffd", text).replace("\x00", "")


def pack_mask(mask: np.ndarray) -> bytes:
    """An H x W bool mask as bytes (8 pixels per byte, row-major)."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


def unpack_mask(data: bytes, height: int, width: int) -> np.ndarray:
    """The H x W bool mask :func:`pack_mask` packed; ValueError when the sizes do not fit."""
    n = int(height) * int(width)
    packed = np.frombuffer(data, dtype=np.uint8)
    if height < 0 or width < 0 or len(packed) != (n + 7) // 8:
        raise ValueError(f"{len(packed)} bytes cannot hold a {height} x {width} mask")
    return np.unpackbits(packed, count=n).astype(bool).reshape(int(height), int(width))


class ChipStore:
    """The part files of one run in ``directory`` (see the module docstring).

    ``manifest`` is a JSON-ready dict of what the chips depend on; it must equal the one an
    earlier run left in the folder, else :class:`~sociogeo.errors.ConfigError` names what differs.
    """

    def __init__(self, directory, manifest: dict):
        self.dir = Path(directory).expanduser()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the results folder {self.dir}: {exc.strerror}") from exc
        self.manifest = json.loads(json.dumps(manifest))  # as it reads back from JSON
        self._checked: dict[str, tuple] = {}  # part name -> (size, mtime) it was checked at
        self._check_manifest()
        self._next = max((int(m.group(1)) for m in map(_PART.match, os.listdir(self.dir)) if m), default=-1) + 1

    def _check_manifest(self) -> None:
        path = self.dir / MANIFEST
        if path.exists():
            old, problem = _read_manifest(path)
            if problem is not None:
                self._set_aside_all(f"its {MANIFEST} {problem}")
            elif old != self.manifest:
                diff = sorted(k for k in set(old) | set(self.manifest) if old.get(k) != self.manifest.get(k))
                raise ConfigError(
                    f"{self.dir} holds chips of a different run (differs in: {', '.join(diff)}); "
                    "write to another output (or resume_dir), or delete that folder to start over"
                )
        tmp = path.with_name(f".{MANIFEST}.tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def _set_aside_all(self, why: str) -> None:
        parts = self.parts()
        if parts:
            warnings.warn(f"{self.dir}: {why}, so its {len(parts)} result part(s) cannot be trusted and are set "
                          "aside (renamed *.unverified); their chips will run again", stacklevel=4)
        for part in parts:
            os.replace(part, part.with_name(part.name + ".unverified"))

    # -- writing --------------------------------------------------------------------------------
    def append(self, records: list[dict]) -> Path | None:
        """Write ``records`` (dicts with :data:`COLUMNS`; ``geometry`` a shapely geometry in
        EPSG:3857 or None) as one new part file; returns its path (None for no records).
        """
        import geopandas as gpd
        import pandas as pd

        if not records:
            return None
        rows = []
        for record in records:
            row = {c: record.get(c) for c in COLUMNS}
            for key in ("stage1_text", "stage2_text", "reasoning", "discarded", "query"):
                row[key] = clean_text(row[key])
            if row["status"] not in STATUSES:
                raise ValueError(f"unknown chip status {row['status']!r}")
            rows.append(row)
        frame = pd.DataFrame(rows, columns=COLUMNS)
        for key in ("row", "col", "col_off", "row_off", "width", "height", "mask_height", "mask_width"):
            frame[key] = frame[key].fillna(0).astype("int64")
        gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(frame["geometry"].tolist(), crs="EPSG:3857"),
                               crs="EPSG:3857")
        path = self.dir / f"part-{self._next:06d}.parquet"
        self._next += 1
        tmp = path.with_name(f".{path.name}.tmp")
        gdf.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path

    # -- reading --------------------------------------------------------------------------------
    def parts(self) -> list[Path]:
        """The complete part files, oldest first."""
        return sorted(p for p in self.dir.iterdir() if _PART.match(p.name))

    def read(self, columns: list[str] | None = None):
        """Every stored chip as one GeoDataFrame (EPSG:3857), the first copy of each (query, chip).

        A part that cannot be read is set aside (renamed ``*.unreadable``) with a warning, so
        its chips run again.
        """
        import geopandas as gpd
        import pandas as pd

        wanted = None if columns is None else list(dict.fromkeys(["query", "chip_id", *columns, "geometry"]))
        frames = []
        for path in self.parts():
            try:
                whole = self._check_part(path)  # read whole when first checked: no second read then
                frame = gpd.read_parquet(path, columns=wanted) if whole is None else whole
                if wanted is not None:
                    frame = frame[wanted]
            except Exception as exc:  # noqa: BLE001 (any unreadable part is set aside and redone)
                warnings.warn(f"ignoring unreadable result part {path.name} ({type(exc).__name__}: {exc}); "
                              "its chips will run again", stacklevel=2)
                os.replace(path, path.with_name(path.name + ".unreadable"))
                continue
            frames.append(frame)
        if not frames:
            empty = pd.DataFrame({c: pd.Series(dtype=object) for c in (wanted or COLUMNS) if c != "geometry"})
            return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs="EPSG:3857"), crs="EPSG:3857")
        out = pd.concat(frames, ignore_index=True)
        out = out.drop_duplicates(subset=["query", "chip_id"], keep="first").reset_index(drop=True)
        return gpd.GeoDataFrame(out, geometry="geometry", crs="EPSG:3857")

    def _check_part(self, path: Path):
        """ValueError unless ``path`` is a part this code could have written (see the module docstring);
        checked once per file version. Returns the whole part when this call read it, else None.
        """
        import geopandas as gpd

        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        if self._checked.get(path.name) == signature:
            return None
        _check_part_footer(path)
        frame = gpd.read_parquet(path)
        _check_part_values(frame)
        self._checked[path.name] = signature
        return frame

    def finished(self) -> set[tuple[str, str]]:
        """The (query, chip_id) pairs already stored."""
        done = self.read(columns=["status"])
        return set(zip(done["query"], done["chip_id"]))


def _read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """``(manifest, None)``, or ``(None, what is wrong with it)``."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            return None, f"is {size:,} bytes, not a manifest"
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"cannot be read ({type(exc).__name__})"
    if not isinstance(old, dict):
        return None, f"holds a JSON {type(old).__name__}, not an object"
    return old, None


def _check_part_footer(path: Path) -> None:
    """Sizes and column types from the part's footer, before any data is decompressed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > MAX_PART_BYTES or path.stat().st_size > MAX_PART_BYTES:
        raise ValueError(f"declares {declared:,} bytes uncompressed, more than {MAX_PART_BYTES:,}")
    schema = meta.schema.to_arrow_schema()
    kinds = {**dict.fromkeys(_INTS, pa.types.is_integer), **dict.fromkeys(_TEXTS, _is_text),
             "mask": _is_bytes, "geometry": _is_bytes}
    for name, ok in kinds.items():
        if name not in schema.names:
            raise ValueError(f"missing column {name!r}")
        if not ok(schema.field(name).type):
            raise ValueError(f"column {name!r} holds {schema.field(name).type}")


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _is_bytes(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_null(kind)


def _check_part_values(frame) -> None:
    """ValueError for values this code never writes: unknown statuses, odd chip ids, sizes, masks."""
    if frame[list(_TEXTS[:3])].isna().any().any():
        raise ValueError("a query, chip id or status is missing")
    bad_status = set(frame["status"]) - set(STATUSES)
    if bad_status:
        raise ValueError(f"unknown chip status {sorted(bad_status)[0]!r}")
    if not frame["chip_id"].map(lambda c: bool(_CHIP_ID.match(c))).all():
        raise ValueError("a chip id is not rROW_cCOL")
    ints = frame[list(_INTS)]
    if (ints < 0).any().any() or (ints[["width", "height", "mask_height", "mask_width"]] > _MAX_SIDE).any().any():
        raise ValueError("a chip position or size is out of range")
    expected = (frame["mask_height"] * frame["mask_width"] + 7) // 8
    sizes = frame["mask"].map(lambda m: len(m) if isinstance(m, bytes) else -1)
    if (sizes != expected).any():
        raise ValueError("a packed mask does not fit its mask size")


__all__ = ["COLUMNS", "STATUSES", "ChipStore", "clean_text", "pack_mask", "unpack_mask"]
