"""Result files: a segmentation GeoDataFrame written by extension (GeoPackage, GeoJSON,
GeoParquet) with its ``.attrs`` in a sidecar JSON, and human summaries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._version import __version__
from ..errors import ConfigError
from ..reasoner.kind import NOTICES
from .store import clean_text

# extension -> output format
RESULT_FORMATS = {
    ".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".parquet": "Parquet", ".geoparquet": "Parquet"
}
SIDECAR_SUFFIX = ".json"
PREVIEW_SUFFIX = ".preview.png"
#: The largest sidecar read (its missing-tile lists make it at most a few MB).
MAX_SIDECAR_BYTES = 64 << 20
UNTRAINED_TITLE = "UNTRAINED MODELS \u2014 pipeline demonstration only"
DEMO_TITLE = NOTICES["demo"].upper()
SYNTHETIC_TITLE = "SYNTHETIC stand-in satellite layer, not imagery"
# what each result column holds, written into the sidecar so the file explains itself
COLUMN_DOCS = {
    "query": "the query the entity was found for",
    "area_m2": "ground area in square metres (computed in a local UTM CRS)",
    "chip_id": "the chips (rROW_cCOL) the entity was found in, comma-separated",
    "reasoning": "the model's think texts for those chips",
    "geometry": "polygon in EPSG:4326 (lon/lat)",
}



def check_result_path(path) -> Path:
    """``path`` as a Path if its extension names a result format (.gpkg, .geojson, .parquet),
    else :class:`~sociogeo.errors.ConfigError`.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in RESULT_FORMATS:
        raise ConfigError(
            f"cannot write results to {path.name!r}: unknown extension {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(RESULT_FORMATS)} (GeoPackage, GeoJSON, GeoParquet)"
        )
    _check_writable_parent(path)
    return path


def check_writable_folder(folder, what: str) -> Path:
    """``folder`` if it is, or could be created as, a writable folder; :class:`ConfigError` naming
    ``what`` (a flag such as ``--out``, or an argument) otherwise. Creates nothing: a run that fails
    early leaves no empty folders behind.
    """
    import os

    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create the {what} folder {folder}: {existing} is a file; choose another {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write the {what} folder {folder}: {existing} is not writable; choose another {what}")
    return folder


def _check_writable_parent(path: Path) -> None:
    """ConfigError now, not after a whole run, when ``path``'s folder cannot be made or written."""
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; the output must be a file path such as {path / 'result.gpkg'}")
    check_writable_folder(path.parent, "output path")


def sidecar_path(path) -> Path:
    """Where a result file's metadata goes: ``<file>.json`` (``schools.gpkg`` -> ``schools.gpkg.json``)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def preview_path(path) -> Path:
    """Where a result file's preview goes: ``schools.gpkg`` -> ``schools.preview.png``."""
    path = Path(path)
    return path.with_name(path.stem + PREVIEW_SUFFIX)


def write_result(gdf, path) -> dict[str, Path]:
    """Write a result GeoDataFrame to ``path`` (format from the extension) and its ``.attrs`` to
    the sidecar ``<path>.json``; returns ``{"result": path, "metadata": sidecar}``.

    Both files are written under temporary names and renamed into place, so an interrupted run
    never leaves a half-written file under the final name.
    """
    path = check_result_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = RESULT_FORMATS[path.suffix.lower()]
    gdf = _clean_frame(gdf)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        if fmt == "Parquet":
            gdf.to_parquet(tmp)
        else:
            layer = {"layer": path.stem} if fmt == "GPKG" else {}
            gdf.to_file(tmp, driver=fmt, **layer)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {
        "sociogeo_version": __version__,
        "file": path.name,
        "format": fmt,
        "n_entities": len(gdf),
        "crs": str(gdf.crs) if gdf.crs is not None else None,
        "columns": {c: COLUMN_DOCS.get(c, "") for c in gdf.columns},
        "attrs": dict(gdf.attrs),
    }
    sidecar = sidecar_path(path)
    tmp_meta = sidecar.with_name(f".{sidecar.name}.part")
    text = json.dumps(_clean_json(meta), indent=2, ensure_ascii=False, default=lambda v: _clean_json(_jsonable(v)))
    tmp_meta.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp_meta, sidecar)
    return {"result": path, "metadata": sidecar}


def read_result(path):
    """Read a file written by :func:`write_result`; its sidecar's metadata becomes ``.attrs``."""
    import geopandas as gpd

    path = check_result_path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    gdf = gpd.read_parquet(path) if RESULT_FORMATS[path.suffix.lower()] == "Parquet" else gpd.read_file(path)
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        gdf.attrs.update(_read_sidecar(sidecar))
    return gdf


def _read_sidecar(sidecar: Path) -> dict:
    """The ``attrs`` a sidecar holds; ConfigError when it is damaged, not ours, or too large to be ours."""
    def damaged(why: str) -> ConfigError:
        return ConfigError(f"the metadata file {sidecar} {why}; delete it to read the result without its "
                           "metadata, or write the result again")

    size = sidecar.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise damaged(f"is {size:,} bytes, more than a sidecar holds ({MAX_SIDECAR_BYTES:,})")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise damaged(f"is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("attrs", {}), dict):
        raise damaged("is not a sociogeo result sidecar (a JSON object with an 'attrs' object)")
    return meta.get("attrs", {})


SHORT_LABELS = {UNTRAINED_TITLE: "UNTRAINED models", DEMO_TITLE: "demo model", SYNTHETIC_TITLE: "synthetic stand-in"}


def picture_labels(model_kind: str | None = None, synthetic: bool = False, *, short: bool = False) -> list[str]:
    """What every picture, layer and summary of a result must say: untrained or demo models
    (:data:`UNTRAINED_TITLE`, :data:`DEMO_TITLE`) and a synthetic satellite layer
    (:data:`SYNTHETIC_TITLE`); empty for real models on imagery. ``short``: a few words each,
    for map layer names.
    """
    labels = []
    if model_kind == "untrained":
        labels.append(UNTRAINED_TITLE)
    elif model_kind == "demo":
        labels.append(DEMO_TITLE)
    if synthetic:
        labels.append(SYNTHETIC_TITLE)
    return [SHORT_LABELS[label] for label in labels] if short else labels


def result_labels(attrs: dict, *, short: bool = False) -> list[str]:
    """:func:`picture_labels` of a result, from its ``attrs`` (``model_kind``, else ``trained``,
    and ``synthetic_satellite``).
    """
    kind = attrs.get("model_kind") or ("untrained" if attrs.get("trained", True) is False else None)
    return picture_labels(kind, bool(attrs.get("synthetic_satellite", False)), short=short)


def summary_lines(gdf, paths: dict | None = None) -> list[str]:
    """What a run found, for people: entities and area per query, the models, the files written."""
    lines = []
    labels = result_labels(gdf.attrs)
    if UNTRAINED_TITLE in labels:
        lines.append(f"{UNTRAINED_TITLE}: tiny random models, the polygons mean nothing")
    if DEMO_TITLE in labels:
        lines.append(f"{DEMO_TITLE}: not the released model, and not results on imagery")
    if SYNTHETIC_TITLE in labels:
        lines.append(f"{SYNTHETIC_TITLE}: rendered from map data, so the polygons say nothing about a real place")
    queries = list(gdf.attrs.get("queries") or (dict.fromkeys(gdf["query"]) if len(gdf) else []))
    for q in queries:
        rows = gdf[gdf["query"] == q] if len(gdf) else gdf
        noun = "entity" if len(rows) == 1 else "entities"
        lines.append(f"{q!r}: {len(rows)} {noun}, {format_area(float(rows['area_m2'].sum()))}")
    if gdf.attrs.get("vlm") or gdf.attrs.get("sam"):
        lines.append(f"models: {gdf.attrs.get('vlm')} + {gdf.attrs.get('sam')}")
    if gdf.attrs.get("satellite") or gdf.attrs.get("map"):
        lines.append(f"imagery: {gdf.attrs.get('satellite')} + {gdf.attrs.get('map')}, zoom {gdf.attrs.get('zoom')}")
    if gdf.attrs.get("attribution"):
        lines.append(f"attribution: {gdf.attrs['attribution']}")
    for label, path in (paths or {}).items():
        lines.append(f"wrote {path} ({label})")
    return lines


def format_area(m2: float) -> str:
    """An area for people: m² below a hectare, ha below a km², else km²."""
    if m2 < 1e4:
        return f"{m2:,.0f} m\u00b2"
    if m2 < 1e6:
        return f"{m2 / 1e4:,.2f} ha"
    return f"{m2 / 1e6:,.3f} km\u00b2"


def _clean_frame(gdf):
    """``gdf`` with every text cell made writable (:func:`~.store.clean_text`); the same frame when
    nothing needs it.
    """
    import pandas as pd

    texts = [c for c in gdf.columns
             if c != gdf.geometry.name and (gdf[c].dtype == object or pd.api.types.is_string_dtype(gdf[c].dtype))]
    dirty = [c for c in texts if gdf[c].map(lambda v: isinstance(v, str) and clean_text(v) != v).any()]
    if not dirty:
        return gdf
    out = gdf.copy()
    for column in dirty:
        out[column] = out[column].map(lambda v: clean_text(v) if isinstance(v, str) else v)
    return out


def _clean_json(value):
    """Every string in a JSON-ready structure (keys too) made encodable as UTF-8 (:func:`~.store.clean_text`)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_clean_json(k) if isinstance(k, str) else k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    return value


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
