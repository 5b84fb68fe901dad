"""The socio-semantic taxonomy: 10 socio-functions, their socio-classes, and OpenStreetMap tags.

SocioSeg organises queries in three levels (socio-name, socio-class, socio-function). The 10
functions are the paper's. SocioSeg's own 90 classes follow a Chinese third-level POI taxonomy
that is not published with the data, so sociogeo ships its own class table built on
OpenStreetMap tags (``sociogeo/data/taxonomy.csv``, columns ``osm_key, osm_value, socio_class,
socio_function``):

- each row says: a feature tagged ``osm_key=osm_value`` is a ``socio_class``, which serves the
  ``socio_function``; ``osm_value`` ``*`` means any value of the key except ``no``;
- a class may come from several tags (``amenity=hospital`` and ``healthcare=hospital``), and every
  class belongs to exactly one function;
- rows are in priority order for :func:`classify_tags`: the first row whose tag a feature carries
  wins (so ``station=subway`` beats ``railway=station``, and amenities beat land use and building
  types), and ``*`` rows apply only when no exact row matches (``office=government`` is an
  Administrative government office, any other ``office=*`` a Business office).

Choices worth knowing: zoos and cemeteries are Park and greenspace; places of worship, libraries
and community centres are Sport and cultural; post offices and express delivery depots are
Commercial service; research institutes are Educational; parking lots and ports are
Transportation stations; military areas are Administrative.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

from ..errors import ConfigError

__all__ = [
    "SOCIO_FUNCTIONS",
    "SOCIOSEG_CLASS_NAMES",
    "CLASS_SYNONYMS",
    "load_taxonomy",
    "socio_functions",
    "socio_classes",
    "classes_for_function",
    "classify_tags",
    "query_level",
    "osm_tags_for",
]

#: The 10 socio-functions of SocioSeg, with the paper's spelling and order.
SOCIO_FUNCTIONS = (
    "Commercial service",
    "Sport and cultural",
    "Administrative",
    "Park and greenspace",
    "Business office",
    "Transportation stations",
    "Educational",
    "Industrial",
    "Medical",
    "Residential",
)

#: SocioSeg class names known from the paper (its examples of socio-class queries) that a query
#: may use verbatim; all of them also map to a class of the table through :data:`CLASS_SYNONYMS`
#: or directly. Pass further SocioSeg names to :func:`query_level` with ``extra_classes=``.
SOCIOSEG_CLASS_NAMES = frozenset({"college", "school", "express delivery"})

#: Everyday names of table classes (lower case) -> the table's class name.
CLASS_SYNONYMS = {
    "primary school": "school",
    "elementary school": "school",
    "middle school": "school",
    "high school": "school",
    "secondary school": "school",
    "train station": "railway station",
    "metro station": "subway station",
    "underground station": "subway station",
    "bus terminal": "bus station",
    "shopping center": "shopping mall",
    "shopping centre": "shopping mall",
    "mall": "shopping mall",
    "petrol station": "gas station",
    "filling station": "gas station",
    "town hall": "government office",
    "city hall": "government office",
    "sports centre": "sports center",
    "gymnasium": "sports center",
    "car park": "parking lot",
    "parking": "parking lot",
    "factory area": "factory",
    "residential community": "residential area",
    "housing estate": "residential area",
    "church": "place of worship",
    "temple": "place of worship",
    "mosque": "place of worship",
    "courier": "express delivery",
    "research center": "research institute",
    "research centre": "research institute",
}

_COLUMNS = ("osm_key", "osm_value", "socio_class", "socio_function")
_WILDCARD = "*"


class _Row(NamedTuple):
    osm_key: str
    osm_value: str
    socio_class: str
    socio_function: str


def _norm(text: str) -> str:
    """Case- and spacing-insensitive form of a name: ``"Railway_Station "`` -> ``"railway station"``."""
    return re.sub(r"\s+", " ", str(text).replace("_", " ")).strip().casefold()


@functools.lru_cache(maxsize=1)
def _rows() -> tuple[_Row, ...]:
    """The table's rows, checked once: known functions, one function per class."""
    text = resources.files("sociogeo").joinpath("data/taxonomy.csv").read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    header = tuple(next(reader))
    if header != _COLUMNS:
        raise ConfigError(f"sociogeo/data/taxonomy.csv must have columns {_COLUMNS}, got {header}")
    rows = tuple(_Row(*(cell.strip() for cell in line)) for line in reader if line)
    function_of: dict[str, str] = {}
    for row in rows:
        if row.socio_function not in SOCIO_FUNCTIONS:
            raise ConfigError(f"taxonomy.csv: unknown socio-function {row.socio_function!r} in {row}")
        known = function_of.setdefault(row.socio_class, row.socio_function)
        if known != row.socio_function:
            raise ConfigError(f"taxonomy.csv: class {row.socio_class!r} is both {known!r} and {row.socio_function!r}")
    return rows


def load_taxonomy():
    """The mapping table as a pandas DataFrame (columns osm_key, osm_value, socio_class,
    socio_function), rows in priority order.
    """
    import pandas as pd

    return pd.DataFrame(list(_rows()), columns=list(_COLUMNS))


def socio_functions() -> list[str]:
    """The 10 socio-functions, in the paper's order."""
    return list(SOCIO_FUNCTIONS)


def socio_classes() -> list[str]:
    """Every socio-class of the table, in table order."""
    return list(dict.fromkeys(row.socio_class for row in _rows()))


def _function_named(name: str) -> str | None:
    key = _norm(name)
    return next((f for f in SOCIO_FUNCTIONS if _norm(f) == key), None)


def _singular(text: str) -> str:
    if text.endswith("ies"):
        return text[:-3] + "y"
    if text.endswith("s") and not text.endswith("ss"):
        return text[:-1]
    return text


def _class_named(name: str) -> str | None:
    """The table class a name means (exact, synonym, or a plural of either), or None."""
    classes = {_norm(c): c for c in socio_classes()}
    for key in dict.fromkeys((_norm(name), _singular(_norm(name)))):
        if key in classes:
            return classes[key]
        if key in CLASS_SYNONYMS:
            return classes[_norm(CLASS_SYNONYMS[key])]
    return None


def classes_for_function(name: str) -> list[str]:
    """The socio-classes serving a socio-function (case-insensitive), in table order."""
    function = _function_named(name)
    if function is None:
        raise ConfigError(f"unknown socio-function {name!r}; choose one of {list(SOCIO_FUNCTIONS)}")
    return list(dict.fromkeys(row.socio_class for row in _rows() if row.socio_function == function))


def _values(value: Any) -> list[str]:
    """A tag's values: OSM separates several with ';'. Missing values (None, NaN) give none."""
    if not isinstance(value, str):
        return []
    return [v.strip() for v in value.split(";") if v.strip()]


def classify_tags(tags: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(socio_class, socio_function)`` of a feature from its OSM tags, or None if no row matches.

    ``tags`` is a mapping of tag key to value (a dict, or a GeoDataFrame row whose missing tags are
    NaN). Exact rows are tried in table order before ``*`` rows; see the module docstring.
    """
    present = {key: _values(tags.get(key)) for key in {row.osm_key for row in _rows()}}
    for row in _rows():
        if row.osm_value != _WILDCARD and row.osm_value in present[row.osm_key]:
            return row.socio_class, row.socio_function
    for row in _rows():
        if row.osm_value == _WILDCARD and any(v != "no" for v in present[row.osm_key]):
            return row.socio_class, row.socio_function
    return None


def query_level(query: str, *, extra_classes: tuple[str, ...] | frozenset[str] = ()) -> str:
    """The SocioSeg level of a query: ``"function"``, ``"class"`` or ``"name"``.

    A query equal (ignoring case, spacing and underscores) to one of the 10 socio-functions is a
    function; one naming a class of the table (or a synonym or plural of one), a class in
    :data:`SOCIOSEG_CLASS_NAMES` or in ``extra_classes`` is a class; anything else is a name
    (a particular place, e.g. "Jinan Zoo").
    """
    if not isinstance(query, str) or not query.strip():
        raise ConfigError(f"a query must be a non-empty string, got {query!r}")
    if _function_named(query) is not None:
        return "function"
    key = _norm(query)
    known = {_norm(c) for c in (*SOCIOSEG_CLASS_NAMES, *extra_classes)}
    if _class_named(query) is not None or key in known or _singular(key) in known:
        return "class"
    return "name"


def osm_tags_for(level_value: str) -> dict[str, bool | list[str]]:
    """The osmnx-style tag dict selecting a socio-class or socio-function.

    For example ``osm_tags_for("park") == {"leisure": ["park"]}``; a ``*`` row gives ``True``
    (``{"office": True}``). Pass the result as ``tags=`` to ``osmnx.features_from_*``. The
    selection can be wider than the class (``office=True`` also finds government offices), so
    keep only the features whose :func:`classify_tags` is the wanted class or function.
    """
    function = _function_named(level_value)
    if function is not None:
        rows = [row for row in _rows() if row.socio_function == function]
    else:
        cls = _class_named(level_value)
        if cls is None:
            names = [*SOCIO_FUNCTIONS, *socio_classes(), *CLASS_SYNONYMS]
            close = difflib.get_close_matches(str(level_value), names, n=3, cutoff=0.6)
            hint = f" Did you mean {close}?" if close else ""
            raise ConfigError(
                f"{level_value!r} is neither a socio-function nor a known socio-class, so it has no "
                f"OSM tags (a named place is looked up by name instead).{hint} "
                "See sociogeo.osm.taxonomy.socio_classes() for the classes."
            )
        rows = [row for row in _rows() if row.socio_class == cls]
    tags: dict[str, bool | list[str]] = {}
    for row in rows:
        if row.osm_value == _WILDCARD:
            tags[row.osm_key] = True
        elif tags.get(row.osm_key) is not True:
            values = tags.setdefault(row.osm_key, [])
            if row.osm_value not in values:
                values.append(row.osm_value)
    return tags
