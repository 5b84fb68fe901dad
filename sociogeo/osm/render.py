"""Street-map images drawn locally from OpenStreetMap data onto a :class:`~sociogeo.geo.grid.PixelGrid`.

Two styles:

- ``"socioseg"``: what SocioSeg's map images show, roads and POI name labels on a plain light
  background (no land-use colouring unless ``landuse=True``). Roads are drawn by class, with
  widths in ground metres converted to pixels at the grid's zoom.
- ``"landcover"``: a *synthetic* satellite-like stand-in (vegetation green, water blue,
  buildings grey, roads dark, bare ground beige, a fixed pixel texture, no labels), for runs
  where no real imagery is available. It is not imagery; never evaluate on it.

Geometry is rasterised by pixel centre in global pixel coordinates, so any window of a grid
renders exactly the pixels of the same region of the whole grid (only labels, which are
placed per render, may differ near a window's edge). Output is deterministic.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..geo.grid import MAX_LATITUDE, PixelGrid, ground_resolution, lonlat_to_pixel

STYLES = ("socioseg", "landcover")
BACKGROUND = (244, 242, 238)  # socioseg's plain light background, RGB
LABEL_SIZE = 12  # label text height in pixels
# OSM is loaded this many pixels beyond the grid, so roads and labels at the edge are complete
PAD_PX = 256
_BLOCK = 2048  # the largest window rasterised at once (bounds temporary memory for big grids)
# Ground resolution is taken at the feature's latitude rounded to this many degrees, so a
# road's width does not depend on how the data happened to be clipped (widths are off by at
# most ~1% at 60° latitude, far less than a pixel).
_LAT_STEP = 0.5


@dataclass(frozen=True)
class RoadStyle:
    """How one road class is drawn: width in ground metres (at least ``min_px`` pixels) and RGB colours."""

    width_m: float
    min_px: float
    fill: tuple[int, int, int]
    casing: tuple[int, int, int] | None = None
    dark: tuple[int, int, int] = (88, 88, 92)  # its colour in the landcover style


# In drawing order: later classes are drawn over earlier ones.
ROAD_STYLES: dict[str, RoadStyle] = {
    "path": RoadStyle(2.0, 1.5, (212, 203, 192), None, (150, 142, 128)),
    "track": RoadStyle(3.0, 1.5, (222, 205, 170), None, (150, 135, 110)),
    "service": RoadStyle(4.5, 2.0, (255, 255, 255), (206, 202, 196), (105, 104, 106)),
    "pedestrian": RoadStyle(5.0, 2.0, (238, 236, 246), (204, 200, 212), (120, 118, 118)),
    "minor": RoadStyle(7.0, 2.5, (255, 255, 255), (200, 196, 188), (95, 95, 98)),
    "tertiary": RoadStyle(10.0, 3.0, (255, 255, 255), (184, 178, 168), (85, 85, 88)),
    "secondary": RoadStyle(12.0, 3.5, (254, 236, 165), (200, 176, 116), (80, 80, 84)),
    "primary": RoadStyle(14.0, 4.0, (252, 218, 128), (206, 164, 86), (75, 75, 79)),
    "trunk": RoadStyle(16.0, 4.5, (250, 198, 110), (204, 148, 70), (72, 72, 76)),
    "motorway": RoadStyle(18.0, 5.0, (247, 176, 88), (200, 128, 50), (70, 70, 74)),
}
_ROAD_CLASS = {
    "motorway": "motorway", "trunk": "trunk", "primary": "primary", "secondary": "secondary",
    "tertiary": "tertiary", "residential": "minor", "unclassified": "minor",
    "living_street": "minor", "road": "minor", "busway": "minor", "construction": "minor",
    "service": "service", "pedestrian": "pedestrian", "track": "track",
}
_LINK_WIDTH = 0.7  # motorway_link etc. are narrower than their road
CASING_PX = 1.0  # casing line width on each side, pixels

# Land-use kinds (the OSM value) grouped by how they are coloured.
_KIND_GROUPS = {
    "green": {"park", "garden", "grass", "village_green", "recreation_ground", "meadow", "common",
              "dog_park", "playground", "nature_reserve", "cemetery", "allotments", "golf_course",
              "greenfield", "scrub", "grassland", "heath", "fell", "flowerbed", "plant_nursery"},
    "forest": {"forest", "wood"},
    "sport": {"pitch", "sports_centre", "stadium", "track", "schoolyard"},
    "residential": {"residential", "garages"},
    "commercial": {"commercial", "retail"},
    "industrial": {"industrial", "railway", "construction", "brownfield", "depot", "port", "quarry"},
    "civic": {"education", "civic", "institutional", "religious", "military", "lane"},
    "farm": {"farmland", "farmyard", "orchard", "vineyard", "greenhouse_horticulture"},
    "sand": {"beach", "sand", "shingle"},
    "rock": {"bare_rock", "scree"},
    "wetland": {"wetland"},
    "water": {"reservoir", "basin", "salt_pond"},
}
_KIND_TO_GROUP = {kind: group for group, kinds in _KIND_GROUPS.items() for kind in kinds}

# Colours per land-use group: (socioseg with landuse=True, landcover)
LANDUSE_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "green": ((205, 233, 190), (104, 134, 74)),
    "forest": ((182, 218, 166), (62, 92, 52)),
    "sport": ((196, 230, 208), (112, 148, 84)),
    "residential": ((234, 230, 224), (166, 160, 150)),
    "commercial": ((246, 226, 224), (172, 164, 156)),
    "industrial": ((232, 224, 234), (160, 156, 150)),
    "civic": ((240, 234, 214), (168, 160, 146)),
    "farm": ((238, 240, 210), (160, 158, 104)),
    "sand": ((250, 240, 202), (214, 198, 160)),
    "rock": ((226, 221, 212), (150, 146, 138)),
    "wetland": ((204, 226, 220), (84, 108, 84)),
    "water": ((170, 206, 240), (52, 82, 110)),
    "other": ((234, 231, 224), (170, 160, 140)),
}
WATER = ((170, 206, 240), (52, 82, 110))  # (socioseg, landcover)
WATER_LINE_WIDTH_M = {"river": 12.0, "canal": 8.0, "stream": 3.0, "drain": 2.0, "ditch": 2.0}
BUILDING_LANDCOVER = (136, 134, 131)
BARE_GROUND = (182, 168, 140)  # landcover background
TEXTURE_AMPLITUDE = 6  # +- levels of the landcover style's fixed per-pixel texture

# Label text colour by the POI's key (markers use the same colour).
LABEL_COLOURS = {
    "amenity": (66, 86, 140),
    "shop": (160, 90, 30),
    "tourism": (120, 60, 130),
    "leisure": (40, 120, 60),
    "office": (90, 90, 96),
    "healthcare": (180, 50, 50),
    "railway": (40, 90, 160),
    "public_transport": (40, 90, 160),
    "aeroway": (40, 90, 160),
}
LABEL_COLOUR = (70, 70, 70)
LABEL_HALO = (255, 255, 255)
_MARKER_RADIUS = 3
_LABEL_GAP = 3  # pixels kept free around each label
_KEY_RANK = {"railway": 0, "public_transport": 0, "aeroway": 0, "amenity": 1, "tourism": 2,
             "leisure": 3, "healthcare": 4, "office": 5, "shop": 6}
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


# -- public API -------------------------------------------------------------------------------
def render_map(
    osm,
    grid: PixelGrid,
    *,
    style: str = "socioseg",
    landuse: bool = False,
    labels: bool = True,
    font=None,
    water: bool = True,
    label_size: int = LABEL_SIZE,
) -> np.ndarray:
    """Draw ``osm`` (an :class:`sociogeo.osm.OSMData`) on ``grid``; an H x W x 3 uint8 RGB array.

    ``style="socioseg"``: roads and POI labels on a light background, plus water (``water``)
    and land-use fill (``landuse``). ``style="landcover"``: the synthetic satellite stand-in
    (no labels). ``font`` is a path to a .ttf/.otf font for the labels (e.g. a CJK font for
    Chinese names); by default DejaVu Sans as shipped with matplotlib (Pillow's built-in
    ``ImageFont.load_default`` where matplotlib is absent), ``label_size`` pixels high. A
    warning names the characters of POI names that the font cannot draw.
    """
    renderer = MapRenderer(osm, grid, style=style, landuse=landuse, labels=labels, font=font, water=water,
                           label_size=label_size)
    return renderer.render(grid)


class MapRenderer:
    """Draws any window of one area's map, pixel for pixel what rendering the whole area shows.

    Labels are placed once for the whole area (``grid``); each :meth:`render` call paints only
    the features near its window, so a city's map can be drawn chip by chip without ever holding
    the whole image. Parameters are as in :func:`render_map`.
    """

    def __init__(self, osm, grid: PixelGrid, *, style: str = "socioseg", landuse: bool = False,
                 labels: bool = True, font=None, water: bool = True, label_size: int = LABEL_SIZE):
        if style not in STYLES:
            raise ConfigError(f"unknown map style {style!r}; choose one of {', '.join(map(repr, STYLES))}")
        if not isinstance(grid, PixelGrid):
            raise ConfigError(f"grid must be a sociogeo PixelGrid, got {type(grid).__name__}")
        self.osm = osm
        self.grid = grid
        self.landcover = style == "landcover"
        self.landuse = landuse or self.landcover
        self.water = water or self.landcover
        self.attribution = getattr(osm, "attribution", "")
        self._font = None
        self._placed: list = []
        if labels and not self.landcover and len(osm.pois):
            self._font = _load_font(font, label_size)
            self._placed = _place_labels(osm.pois, grid, self._font)

    @classmethod
    def for_area(cls, grid: PixelGrid, *, source=None, landuse: bool = False, labels: bool = True,
                 style: str = "socioseg") -> MapRenderer:
        """A renderer for ``grid`` with OpenStreetMap data loaded once for its bounds (padded by
        :data:`PAD_PX` pixels, so roads and labels at the edge are complete). ``source`` is as
        in :func:`sociogeo.osm.load_osm` (None: Overpass; or a local .osm / .osm.pbf file).
        """
        from .data import load_osm

        padded = grid.window(-PAD_PX, -PAD_PX, grid.width + 2 * PAD_PX, grid.height + 2 * PAD_PX)
        west, south, east, north = padded.lonlat_bounds
        bounds = (max(west, -180.0), max(south, -MAX_LATITUDE), min(east, 180.0), min(north, MAX_LATITUDE))
        return cls(load_osm(bounds, source=source), grid, style=style, landuse=landuse, labels=labels)

    def render(self, window: PixelGrid) -> np.ndarray:
        """The map on ``window`` (any window of the global pixel raster at the area's zoom), as an
        H x W x 3 uint8 RGB array.
        """
        if window.zoom != self.grid.zoom:
            raise ConfigError(f"the window is at zoom {window.zoom}, the map at zoom {self.grid.zoom}")
        paint = _paint_list(self.osm, window, landcover=self.landcover, landuse=self.landuse, water=self.water)
        out = np.empty((window.height, window.width, 3), dtype=np.uint8)
        for row in range(0, window.height, _BLOCK):
            for col in range(0, window.width, _BLOCK):
                block = window.window(col, row, min(_BLOCK, window.width - col), min(_BLOCK, window.height - row))
                image = _rasterise(paint, block, landcover=self.landcover)
                if self._placed:
                    image = _draw_labels(image, block, self._placed, self._font)
                out[row:row + block.height, col:col + block.width] = image
        return out


def render_osm_map(
    grid: PixelGrid,
    *,
    source=None,
    landuse: bool = False,
    labels: bool = True,
    style: str = "socioseg",
):
    """Load OpenStreetMap around ``grid`` and draw it; ``(H x W x 3 uint8 array, attribution)``.

    The data is loaded for the grid's bounds padded by :data:`PAD_PX` pixels, so roads and
    labels at the edge are complete. ``source`` is as in :func:`sociogeo.osm.load_osm`
    (None: Overpass; or a local .osm / .osm.pbf file).
    """
    renderer = MapRenderer.for_area(grid, source=source, landuse=landuse, labels=labels, style=style)
    return renderer.render(grid), renderer.attribution


# -- geometry -> paint list -------------------------------------------------------------------
@dataclass
class _Paint:
    """Polygons in global pixel coordinates (x = column, y = row), in drawing order, and their colours."""

    polygons: np.ndarray  # N shapely geometries
    codes: np.ndarray  # N indices into ``palette`` (0 is kept for the background)
    palette: np.ndarray  # K x 3 uint8 RGB; row 0 is unused


def _paint_list(osm, grid: PixelGrid, *, landcover: bool, landuse: bool, water: bool) -> _Paint:
    which = 1 if landcover else 0
    region = _grid_box(grid, margin=PAD_PX)
    layers: list[tuple[list, list]] = []
    if landuse:
        layers.append(_landuse_paint(_within(osm.landuse, grid, region), grid.zoom, which))
    if water:
        layers.append(_water_paint(_within(osm.water, grid, region), grid.zoom, which))
    if landcover:
        geoms = _to_pixels(_within(osm.buildings, grid, region), grid.zoom)
        layers.append((list(geoms), [BUILDING_LANDCOVER] * len(geoms)))
    layers.append(_road_paint(_within(osm.roads, grid, region), grid.zoom, landcover=landcover))
    polygons = [g for geoms, _ in layers for g in geoms]
    colours = [tuple(c) for _, cols in layers for c in cols]
    unique = sorted(set(colours))
    lookup = {c: k + 1 for k, c in enumerate(unique)}
    return _Paint(
        polygons=np.array(polygons, dtype=object),
        codes=np.array([lookup[c] for c in colours], dtype=np.uint8),
        palette=np.array([(0, 0, 0), *unique], dtype=np.uint8).reshape(-1, 3),
    )


def _grid_box(grid: PixelGrid, margin: float):
    """The grid plus ``margin`` pixels on every side, as a box in global pixel coordinates."""
    from shapely import box

    return box(grid.col_off - margin, grid.row_off - margin,
               grid.col_off + grid.width + margin, grid.row_off + grid.height + margin)


def _within(gdf, grid: PixelGrid, region):
    """The rows of ``gdf`` (EPSG:4326) whose bounds reach the pixel ``region``."""
    if gdf is None or len(gdf) == 0:
        return gdf.iloc[:0] if gdf is not None else gdf
    from shapely import box

    x0, y0, x1, y1 = region.bounds
    (w, e), (n, s) = _pixel_to_lonlat(np.array([x0, x1]), np.array([y0, y1]), grid.zoom)
    rows = gdf.sindex.query(box(w, s, e, n), predicate="intersects")
    return gdf.iloc[np.sort(rows)]


def _pixel_to_lonlat(px, py, zoom):
    from ..geo.grid import ORIGIN_SHIFT_M, mercator_resolution, mercator_to_lonlat

    res = mercator_resolution(zoom)
    return mercator_to_lonlat(px * res - ORIGIN_SHIFT_M, ORIGIN_SHIFT_M - py * res)


def _to_pixels(gdf, zoom: int) -> np.ndarray:
    """EPSG:4326 geometries in global pixel coordinates at ``zoom`` (x = column, y = row)."""
    import shapely

    if gdf is None or len(gdf) == 0:
        return np.array([], dtype=object)

    def project(coords):
        x, y = lonlat_to_pixel(coords[:, 0], coords[:, 1], zoom)
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(gdf.geometry.to_numpy(), dtype=object), project)


def _metres_to_pixels(gdf, zoom: int) -> np.ndarray:
    """Pixels per ground metre for each feature, at its latitude (rounded to ``_LAT_STEP``)."""
    if len(gdf) == 0:
        return np.zeros(0)
    lat = (gdf.geometry.bounds["miny"].to_numpy() + gdf.geometry.bounds["maxy"].to_numpy()) / 2
    lat = np.round(lat / _LAT_STEP) * _LAT_STEP
    return 1.0 / np.array([ground_resolution(zoom, float(v)) for v in lat])


def _road_paint(roads, zoom: int, *, landcover: bool):
    import shapely

    if roads is None or len(roads) == 0:
        return [], []
    lines = _to_pixels(roads, zoom)
    scale = _metres_to_pixels(roads, zoom)
    classes, factors = zip(*(_road_class(h) for h in roads["highway"]))
    names = list(ROAD_STYLES)
    rank = np.array([names.index(c) for c in classes])
    widths = np.array([
        max(ROAD_STYLES[c].width_m * f * s, ROAD_STYLES[c].min_px * f)
        for c, f, s in zip(classes, factors, scale)
    ])
    order = np.lexsort((np.arange(len(rank)), rank))  # by class, stable within a class
    geoms, colours = [], []
    if not landcover:
        # every casing first, so road fills join seamlessly at junctions
        cased = [i for i in order if ROAD_STYLES[classes[i]].casing is not None]
        geoms += list(shapely.buffer(lines[cased], widths[cased] / 2 + CASING_PX))
        colours += [ROAD_STYLES[classes[i]].casing for i in cased]
    geoms += list(shapely.buffer(lines[order], widths[order] / 2))
    colours += [ROAD_STYLES[classes[i]].dark if landcover else ROAD_STYLES[classes[i]].fill for i in order]
    return geoms, colours


def _road_class(highway) -> tuple[str, float]:
    """(style class, width factor) of an OSM ``highway`` value; unknown values draw as paths."""
    value = str(highway)
    factor = 1.0
    if value.endswith("_link"):
        value, factor = value[: -len("_link")], _LINK_WIDTH
    return _ROAD_CLASS.get(value, "path"), factor


def _landuse_paint(landuse, zoom: int, which: int):
    import shapely

    if landuse is None or len(landuse) == 0:
        return [], []
    geoms = _to_pixels(landuse, zoom)
    kinds = landuse["kind"].to_numpy()
    # big areas first, so a park inside a residential area stays visible
    order = np.lexsort((np.arange(len(geoms)), -shapely.area(geoms)))
    colours = [LANDUSE_COLOURS[_KIND_TO_GROUP.get(str(kinds[i]), "other")][which] for i in order]
    return list(geoms[order]), colours


def _water_paint(water, zoom: int, which: int):
    import shapely

    if water is None or len(water) == 0:
        return [], []
    geoms = _to_pixels(water, zoom)
    scale = _metres_to_pixels(water, zoom)
    lines = np.isin(shapely.get_type_id(geoms), [1, 5])  # LineString, MultiLineString
    widths = np.array([WATER_LINE_WIDTH_M.get(str(k), 3.0) for k in water["kind"]]) * scale
    geoms = geoms.copy()
    geoms[lines] = shapely.buffer(geoms[lines], np.maximum(widths[lines], 1.5) / 2)
    return list(geoms), [WATER[which]] * len(geoms)


# -- rasterising ------------------------------------------------------------------------------
def _rasterise(paint: _Paint, block: PixelGrid, *, landcover: bool) -> np.ndarray:
    """The block's pixels: each paint polygon covers the pixels whose centre it contains."""
    import shapely
    from rasterio.features import rasterize

    palette = paint.palette.copy()
    palette[0] = BARE_GROUND if landcover else BACKGROUND
    codes = np.zeros((block.height, block.width), dtype=np.uint8)
    if len(paint.polygons):
        index = np.flatnonzero(shapely.intersects(paint.polygons, _grid_box(block, margin=1)))
        if len(index):
            # integer shifts of exactly representable coordinates are exact, so every window
            # sees the same local geometry as the whole grid does
            offset = np.array([block.col_off, block.row_off], dtype="float64")
            local = shapely.transform(paint.polygons[index], lambda c: c - offset)
            codes = rasterize(
                zip(local, paint.codes[index].tolist()),
                out_shape=(block.height, block.width),
                fill=0,
                dtype="uint8",
            )
    image = palette[codes]
    if landcover:
        image = _texture(image, block)
    return image


def _texture(image: np.ndarray, block: PixelGrid) -> np.ndarray:
    """A fixed pseudo-random texture keyed on global pixel indices (the same in every window)."""
    cols = (np.arange(block.width, dtype=np.int64) + block.col_off)[None, :]
    rows = (np.arange(block.height, dtype=np.int64) + block.row_off)[:, None]
    h = (cols * 73856093) ^ (rows * 19349663)
    h = (h ^ (h >> 13)) * 1274126177
    noise = (h >> 7) % (2 * TEXTURE_AMPLITUDE + 1) - TEXTURE_AMPLITUDE
    return np.clip(image.astype(np.int16) + noise[..., None].astype(np.int16), 0, 255).astype(np.uint8)


# -- labels -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Label:
    text: str
    marker: tuple[int, int]  # global pixel (col, row) of the POI
    origin: tuple[int, int]  # global pixel of the text's top-left corner
    box: tuple[int, int, int, int]  # global pixel box of the text (x0, y0, x1, y1)
    colour: tuple[int, int, int]


def _load_font(font, size: int):
    """The label font: ``font`` (a path), else DejaVu Sans, else Pillow's built-in font.

    DejaVu Sans (shipped inside matplotlib, a sociogeo dependency) is preferred to Pillow's
    built-in Aileron because Aileron has no accented letters (ä, é, ø ...), which most
    European place names need.
    """
    from PIL import ImageFont

    if font is None:
        default = _dejavu_path()
        return ImageFont.truetype(str(default), size) if default else ImageFont.load_default(size=size)
    path = Path(font).expanduser()
    if not path.is_file():
        raise ConfigError(f"font file not found: {path}. Pass the path of a .ttf/.otf/.ttc font.")
    try:
        return ImageFont.truetype(str(path), size)
    except OSError as exc:
        raise ConfigError(f"cannot load the font {path}: {exc}. Pass a .ttf/.otf/.ttc font file.") from exc


def _dejavu_path() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")  # located, not imported
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return path if path.is_file() else None


def _missing_glyphs(font, texts) -> list[str]:
    """Characters of ``texts`` that ``font`` draws as its "missing glyph" box."""
    notdef = _glyph_signature(font, "\U0010fffd")  # a private-use code point no font maps
    missing = set()
    for char in sorted({c for text in texts for c in text if not c.isspace()}):
        if _glyph_signature(font, char) == notdef:
            missing.add(char)
    return sorted(missing)


def _glyph_signature(font, char: str):
    mask = font.getmask(char)
    return (mask.size, bytes(mask))


def _place_labels(pois, grid: PixelGrid, font) -> list[_Label]:
    """Greedy, deterministic placement: bigger features first, each label in the first free spot.

    A label goes right, left, above or below its marker; it is skipped when every spot
    overlaps an earlier label or leaves the grid.
    """
    from PIL import Image, ImageDraw

    region = _grid_box(grid, margin=0)
    points = pois.geometry if (pois.geom_type == "Point").all() else pois.geometry.representative_point()
    x, y = lonlat_to_pixel(points.x.to_numpy(), points.y.to_numpy(), grid.zoom)
    x0, y0, x1, y1 = region.bounds
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    n = len(pois)
    names = [" ".join(str(v).split()) for v in pois["name"]]
    keys = list(pois["key"]) if "key" in pois.columns else [None] * n
    areas = pois["area_m2"].fillna(0.0).to_numpy(float) if "area_m2" in pois.columns else np.zeros(n)
    osmids = pois["osmid"].to_numpy() if "osmid" in pois.columns else np.arange(n)
    candidates = sorted(
        np.flatnonzero(inside),
        key=lambda i: (-areas[i], _KEY_RANK.get(keys[i], 9), names[i], int(osmids[i])),
    )
    candidates = [i for i in candidates if names[i] and names[i] != "nan"]
    missing = _missing_glyphs(font, [names[i] for i in candidates])
    if missing:
        hint = "a CJK font such as Noto Sans CJK" if any(_CJK.search(c) for c in missing) else "a font that has them"
        warnings.warn(
            f"the label font cannot draw {len(missing)} character(s) used in POI names "
            f"({''.join(missing[:10])}); they appear as boxes. Pass font='/path/to/font.ttf' ({hint}).",
            stacklevel=3,
        )
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    occupied = _BoxIndex()
    placed: list[_Label] = []
    r = _MARKER_RADIUS
    for i in candidates:
        text = names[i]
        mx, my = math.floor(x[i]), math.floor(y[i])
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font, anchor="lt", stroke_width=1)
        w, h = right - left, bottom - top
        marker = (mx - r - 1, my - r - 1, mx + r + 2, my + r + 2)
        spots = [
            (mx + r + 3, my - h // 2),  # right
            (mx - r - 3 - w, my - h // 2),  # left
            (mx - w // 2, my - r - 3 - h),  # above
            (mx - w // 2, my + r + 3),  # below
        ]
        for tx, ty in spots:
            box = (tx, ty, tx + w, ty + h)
            if box[0] < x0 or box[1] < y0 or box[2] > x1 or box[3] > y1:
                continue
            # labels keep a small gap, so neighbouring names stay legible
            spaced = (box[0] - _LABEL_GAP, box[1] - _LABEL_GAP, box[2] + _LABEL_GAP, box[3] + _LABEL_GAP)
            if occupied.hits(spaced) or occupied.hits(marker):
                continue
            occupied.add(spaced)
            occupied.add(marker)
            colour = LABEL_COLOURS.get(keys[i], LABEL_COLOUR)
            placed.append(_Label(text, (mx, my), (tx - left, ty - top), box, colour))
            break
    return placed


class _BoxIndex:
    """Axis-aligned boxes bucketed on a coarse grid, for fast overlap tests."""

    CELL = 64

    def __init__(self):
        self.cells: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}

    def _cells(self, box):
        c = self.CELL
        for cx in range(box[0] // c, (box[2] - 1) // c + 1):
            for cy in range(box[1] // c, (box[3] - 1) // c + 1):
                yield (cx, cy)

    def hits(self, box) -> bool:
        for cell in self._cells(box):
            for other in self.cells.get(cell, ()):
                if box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]:
                    return True
        return False

    def add(self, box) -> None:
        for cell in self._cells(box):
            self.cells.setdefault(cell, []).append(box)


def _draw_labels(image: np.ndarray, block: PixelGrid, placed: list[_Label], font) -> np.ndarray:
    """Markers and halo'd text of the labels that reach ``block`` (global -> block pixels)."""
    from PIL import Image, ImageDraw

    ox, oy = block.col_off, block.row_off
    x1, y1 = ox + block.width, oy + block.height
    r = _MARKER_RADIUS
    visible = [
        lab for lab in placed
        if min(lab.box[0], lab.marker[0] - r) < x1 and max(lab.box[2], lab.marker[0] + r + 1) > ox
        and min(lab.box[1], lab.marker[1] - r) < y1 and max(lab.box[3], lab.marker[1] + r + 1) > oy
    ]
    if not visible:
        return image
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for lab in visible:
        mx, my = lab.marker[0] - ox, lab.marker[1] - oy
        draw.ellipse((mx - r, my - r, mx + r, my + r), fill=lab.colour, outline=LABEL_HALO)
        draw.text(
            (lab.origin[0] - ox, lab.origin[1] - oy), lab.text, font=font, fill=lab.colour,
            anchor="lt", stroke_width=1, stroke_fill=LABEL_HALO,
        )
    return np.asarray(canvas, dtype=np.uint8).copy()
