"""SocioSeg samples: the Hugging Face dataset, the raw folder layout, and writing both.

One sample type serves every source: :class:`Sample` (id, query, map image, satellite image,
mask, hierarchy level). Layouts (SocioSeg's layout):

- hub: ``vvangfaye/SocioSeg`` with splits train/val/test and columns ``id``, ``problem``,
  ``map_image``, ``sat_image``, ``mask_label``;
- raw folders: ``<root>/<split>/<id>/map.png, sat.png, mask.png, question.json`` (key ``problem``).

A sample that cannot be read is skipped with a warning naming it; it is never replaced by a blank
image.

Query levels (the paper's per-level columns: socio-name, socio-class, socio-function). The
released dataset has no level column, so a sample's level is decided, in this order:

1. ``levels=`` given to :func:`load_socioseg` (a mapping id -> level, or a function
   (id, query) -> level): that value, for every sample (``level_source == "levels"``);
2. the dataset's own level, when it has one: the column ``level_column`` (default ``"level"``) of a
   hub or saved dataset, or that key of a raw sample's ``question.json``; ``"socio-name"``,
   ``"Socio-class"`` and the like are accepted (``level_source == "dataset"``);
3. otherwise a guess from the query text by :func:`sociogeo.osm.taxonomy.query_level`: one of the
   10 socio-functions is a function, a class of sociogeo's POI taxonomy (or a synonym or plural)
   is a class, anything else is a name (``level_source == "query"``). The guess can be wrong for
   a named place whose name is also a class word; give the levels explicitly when they are known.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import defaults
from ..errors import BadSampleError, ConfigError, DatasetNotFoundError
from ..imagery.arrays import as_rgb

HUB_ID = defaults.SOCIOSEG
SPLITS = ("train", "val", "test")
RAW_FILES = ("map.png", "sat.png", "mask.png", "question.json")
LEVELS = ("name", "class", "function")
#: The column (hub or saved dataset) or question.json key that may hold a sample's level.
LEVEL_COLUMN = "level"


@dataclass
class Sample:
    """One SocioSeg sample: ``map_image`` and ``satellite_image`` are H x W x 3 uint8, ``mask``
    is H x W bool (any nonzero label pixel is foreground), ``level`` is "name", "class",
    "function" or None when unknown; ``level_source`` says where the level came from
    (``"levels"``, ``"dataset"`` or ``"query"``, see the module docstring; None when not recorded).
    """

    id: str
    query: str
    map_image: np.ndarray
    satellite_image: np.ndarray
    mask: np.ndarray
    level: str | None = None
    level_source: str | None = None

    def __post_init__(self):
        if self.map_image.shape != self.satellite_image.shape:
            raise ValueError(
                f"sample {self.id}: map {self.map_image.shape} and satellite {self.satellite_image.shape} "
                "differ in size"
            )
        if self.mask.shape != self.map_image.shape[:2]:
            raise ValueError(
                f"sample {self.id}: mask {self.mask.shape} does not match the images {self.map_image.shape[:2]}"
            )


def _mask(image) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            im.load()
            arr = np.asarray(im)
    elif isinstance(image, Image.Image):
        arr = np.asarray(image)
    else:
        arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    return arr > 0


def normalise_level(value, where: str = "level") -> str | None:
    """``"name"``, ``"class"`` or ``"function"`` from a level as datasets write it (``"Socio-name"``,
    ``"socio_class"``, ...); None for an empty value. A :class:`~sociogeo.errors.ConfigError`
    for anything else, naming ``where`` it came from.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    key = str(value).strip().lower().removeprefix("socio-").removeprefix("socio_").removeprefix("socio ")
    if key not in LEVELS:
        raise ConfigError(
            f"{where} is {value!r}; a level must be name, class or function (socio-name, socio-class, "
            "socio-function). Fix the data, pass levels= explicitly, or level_column=None to guess "
            "levels from the queries."
        )
    return key


def _level_for(sample_id: str, query: str, levels, given) -> tuple[str | None, str]:
    """(level, where it came from) by the rules of the module docstring."""
    if levels is not None:
        value = levels(sample_id, query) if callable(levels) else levels.get(sample_id)
        return normalise_level(value, f"levels[{sample_id!r}]"), "levels"
    level = normalise_level(given, f"the level of sample {sample_id!r}")
    if level is not None:
        return level, "dataset"
    from ..osm.taxonomy import query_level

    try:
        return query_level(query), "query"
    except ConfigError as exc:  # an empty query: the sample is unusable, not the configuration
        raise BadSampleError(f"skipping SocioSeg sample {sample_id!r}: {exc}") from exc


class SocioSegDataset(Sequence[Sample]):
    """A sequence of :class:`Sample` built from records by ``read(i)``; unreadable records are
    skipped with a warning on first access.
    """

    def __init__(self, n: int, read: Callable[[int], Sample], name: str):
        self._n = n
        self._read = read
        self.name = name

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._read(i % self._n)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(self._n):
            try:
                yield self._read(i)
            except BadSampleError as exc:
                warnings.warn(str(exc), stacklevel=2)

    def __repr__(self) -> str:
        return f"SocioSegDataset({self.name!r}, {self._n} samples)"


def load_socioseg(
    source: str | Path = HUB_ID,
    split: str = "test",
    *,
    cache_dir=None,
    levels: Mapping[str, str] | Callable[[str, str], str | None] | None = None,
    limit: int | None = None,
    level_column: str | None = LEVEL_COLUMN,
) -> SocioSegDataset:
    """SocioSeg samples from the hub (``"vvangfaye/SocioSeg"``), a raw folder tree, or a dataset
    saved with ``datasets.Dataset.save_to_disk``.

    A sample's level comes from ``levels`` (a mapping id -> level or a function (id, query) ->
    level) when given, else from the dataset's ``level_column`` when it holds one (None: ignore
    it), else it is guessed from the query (:func:`sociogeo.osm.taxonomy.query_level`); each
    sample's ``level_source`` records which. Iterating skips unreadable samples with a warning;
    indexing one raises. A level value that is not name/class/function raises ConfigError.
    """
    if split not in SPLITS:
        raise DatasetNotFoundError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    path = Path(str(source)).expanduser()
    if path.exists():
        if (
            (path / "dataset_info.json").exists()
            or (path / "state.json").exists()
            or (path / split / "state.json").exists()
        ):
            return _from_hf(_load_from_disk(path, split), f"{path}:{split}", levels, limit, level_column)
        return _from_raw(path, split, levels, limit, level_column)
    if str(source).startswith((".", "/", "~")) or "\\" in str(source):
        raise DatasetNotFoundError(f"no dataset folder at {path}")
    return _from_hf(_load_hub(str(source), split, cache_dir), f"{source}:{split}", levels, limit, level_column)


def _load_hub(repo: str, split: str, cache_dir):
    from .._optional import require
    from ..options import options

    datasets = require("datasets", purpose="loading SocioSeg from the Hugging Face hub")
    try:
        if options.offline:
            import os

            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        return datasets.load_dataset(repo, split=split, cache_dir=None if cache_dir is None else str(cache_dir))
    except Exception as exc:  # connection errors, missing repo, offline mode
        raise DatasetNotFoundError(
            f"could not load {repo!r} (split {split!r}) from the Hugging Face hub: {type(exc).__name__}: {exc}. "
            "On a connected machine run `hf download vvangfaye/SocioSeg --repo-type dataset` (or "
            "`datasets.load_dataset(...).save_to_disk(DIR)`), then pass the folder as source."
        ) from exc


def _load_from_disk(path: Path, split: str):
    from .._optional import require

    datasets = require("datasets", purpose="reading a saved dataset")
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DatasetNotFoundError(f"{path} has splits {list(ds)}, not {split!r}")
        ds = ds[split]
    return ds


def _from_hf(ds, name: str, levels, limit, level_column=LEVEL_COLUMN) -> SocioSegDataset:
    missing = {"id", "problem", "map_image", "sat_image", "mask_label"} - set(ds.column_names)
    if missing:
        raise DatasetNotFoundError(f"{name} lacks the SocioSeg columns {sorted(missing)}; it has {ds.column_names}")
    n = len(ds) if limit is None else min(limit, len(ds))

    def read(i: int) -> Sample:
        rec = ds[i]
        sid = str(rec.get("id", i))
        query = str(rec["problem"])
        lvl, source = _level_for(sid, query, levels, rec.get(level_column) if level_column else None)
        try:
            return Sample(sid, query, as_rgb(rec["map_image"], "map", gray=True),
                          as_rgb(rec["sat_image"], "satellite", gray=True), _mask(rec["mask_label"]), lvl, source)
        except Exception as exc:
            raise BadSampleError(f"skipping SocioSeg sample {sid!r} of {name}: {type(exc).__name__}: {exc}") from exc

    return SocioSegDataset(n, read, name)


def _from_raw(root: Path, split: str, levels, limit, level_column=LEVEL_COLUMN) -> SocioSegDataset:
    split_dir = root / split
    if not split_dir.is_dir():
        found = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        raise DatasetNotFoundError(
            f"{root} has no {split!r} folder (found: {', '.join(found) or 'nothing'}); "
            f"expected <root>/{split}/<id>/{{map.png, sat.png, mask.png, question.json}}"
        )
    ids = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not ids:
        raise DatasetNotFoundError(f"{split_dir} holds no sample folders")
    if limit is not None:
        ids = ids[:limit]

    def read(i: int) -> Sample:
        sid = ids[i]
        d = split_dir / sid
        try:
            absent = [f for f in RAW_FILES if not (d / f).exists()]
            if absent:
                raise FileNotFoundError(f"missing {', '.join(absent)}")
            q = json.loads((d / "question.json").read_text(encoding="utf-8"))
            if not isinstance(q, dict) or "problem" not in q:
                raise ValueError('question.json has no "problem" key')
            query = str(q["problem"])
        except Exception as exc:
            raise BadSampleError(
                f"skipping SocioSeg sample {sid!r} in {split_dir}: {type(exc).__name__}: {exc}"
            ) from exc
        lvl, source = _level_for(sid, query, levels, q.get(level_column) if level_column else None)
        try:
            return Sample(sid, query, as_rgb(d / "map.png", "map", gray=True),
                          as_rgb(d / "sat.png", "satellite", gray=True), _mask(d / "mask.png"), lvl, source)
        except Exception as exc:
            raise BadSampleError(
                f"skipping SocioSeg sample {sid!r} in {split_dir}: {type(exc).__name__}: {exc}"
            ) from exc

    return SocioSegDataset(len(ids), read, f"{root}:{split}")


def write_raw(
    samples: Iterable[Sample], root, split: str = "train", *, extra: Callable[[Sample], dict] | None = None
) -> Path:
    """Write samples in SocioSeg's raw layout under ``root/split``; returns that folder.

    ``question.json`` holds ``problem`` (and ``level`` plus anything ``extra(sample)`` returns).
    """
    from PIL import Image

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = Path(root) / split
    out.mkdir(parents=True, exist_ok=True)
    for s in samples:
        d = out / s.id
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(s.map_image).save(d / "map.png")
        Image.fromarray(s.satellite_image).save(d / "sat.png")
        Image.fromarray(s.mask.astype(np.uint8) * 255).save(d / "mask.png")
        meta = {"problem": s.query}
        if s.level:
            meta["level"] = s.level
        if extra is not None:
            meta.update(extra(s))
        # standard JSON only: a NaN in ``extra`` fails here instead of writing a file JSON.parse refuses
        (d / "question.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1, allow_nan=False),
                                         encoding="utf-8")
    return out


def to_hf_dataset(samples: Iterable[Sample]):
    """A ``datasets.Dataset`` with SocioSeg's columns (plus ``level``)."""
    from PIL import Image

    from .._optional import require

    datasets = require("datasets", purpose="building a datasets.Dataset")
    rows = {"id": [], "problem": [], "map_image": [], "sat_image": [], "mask_label": [], "level": []}
    for s in samples:
        rows["id"].append(s.id)
        rows["problem"].append(s.query)
        rows["map_image"].append(Image.fromarray(s.map_image))
        rows["sat_image"].append(Image.fromarray(s.satellite_image))
        rows["mask_label"].append(Image.fromarray(s.mask.astype(np.uint8) * 255))
        rows["level"].append(s.level or "")
    features = datasets.Features({
        "id": datasets.Value("string"), "problem": datasets.Value("string"),
        "map_image": datasets.Image(), "sat_image": datasets.Image(), "mask_label": datasets.Image(),
        "level": datasets.Value("string"),
    })
    return datasets.Dataset.from_dict(rows, features=features)
