"""Areas of interest: a lon/lat polygon plus the zoom level its imagery is fetched at."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from ..defaults import ZOOM as DEFAULT_ZOOM
from ..errors import AreaTooLargeError, InvalidAreaError
from ..options import options
from .grid import MAX_LATITUDE, MAX_ZOOM, PixelGrid, ground_resolution, zoom_for_resolution


def _geod_area_km2(geom) -> float:
    from pyproj import Geod

    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geom)
    return abs(area) / 1e6


def _check_bbox(bbox) -> tuple[float, float, float, float]:
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidAreaError(
            f"bbox must be four numbers (west, south, east, north) in degrees, got {bbox!r}"
        ) from None
    values = {"west": west, "south": south, "east": east, "north": north}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise InvalidAreaError(f"bbox has non-finite {', '.join(bad)}: {bbox!r}")
    for name in ("west", "east"):
        if not -180 <= values[name] <= 180:
            raise InvalidAreaError(
                f"{name} longitude {values[name]} is outside [-180, 180]; "
                "bbox order is (west, south, east, north), longitude first"
            )
    for name in ("south", "north"):
        if not -90 <= values[name] <= 90:
            raise InvalidAreaError(
                f"{name} latitude {values[name]} is outside [-90, 90]; "
                "bbox order is (west, south, east, north), longitude first"
            )
        if abs(values[name]) > MAX_LATITUDE:
            raise InvalidAreaError(
                f"{name} latitude {values[name]} is beyond Web Mercator's limit of ±{MAX_LATITUDE:.4f}°; "
                "tile imagery does not exist there"
            )
    if west >= east:
        raise InvalidAreaError(
            f"west ({west}) must be less than east ({east}); bbox order is (west, south, east, north). "
            "Areas crossing the antimeridian are not supported: split them in two."
        )
    if south >= north:
        raise InvalidAreaError(
            f"south ({south}) must be less than north ({north}); bbox order is (west, south, east, north)"
        )
    return west, south, east, north


@dataclass(frozen=True, eq=False)
class Area:
    """A polygonal area of interest in lon/lat (EPSG:4326) and the zoom its imagery uses.

    Build one with :meth:`from_bbox`, :meth:`from_geojson`, :meth:`from_geometry`,
    :meth:`from_geodataframe` or :meth:`from_leafmap`; they all validate their input.
    """

    geometry: Any  # shapely Polygon or MultiPolygon in EPSG:4326
    zoom: int = DEFAULT_ZOOM
    name: str | None = None
    #: True when neither zoom nor resolution was given and ``zoom`` is the default: imagery
    #: sources with a native resolution (a raster) may then choose the zoom instead.
    default_zoom: bool = field(default=False, repr=False)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_bbox(
        cls,
        bbox,
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area from ``(west, south, east, north)`` in degrees.

        Give ``zoom`` (default 17, about 1.2 m/pixel at the equator) or ``resolution`` in ground
        metres per pixel, from which the coarsest zoom at least that fine is chosen.
        """
        from shapely.geometry import box

        west, south, east, north = _check_bbox(bbox)
        # a bbox says west < east itself: its 360°-wide edges (a world bbox) do not wrap
        return cls._make(box(west, south, east, north), zoom, resolution, max_area_km2, name, bbox=True)

    @classmethod
    def from_geometry(
        cls,
        geometry,
        crs="EPSG:4326",
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area from a shapely Polygon/MultiPolygon in ``crs`` (anything pyproj understands)."""
        geometry = _to_lonlat(geometry, crs)
        return cls._make(geometry, zoom, resolution, max_area_km2, name)

    @classmethod
    def from_geojson(
        cls,
        geojson,
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area from GeoJSON: a dict, a JSON string, or a path to a file.

        Accepts a Geometry, a Feature or a FeatureCollection (its polygons are united).
        GeoJSON coordinates are lon/lat (RFC 7946).
        """
        obj = _load_geojson(geojson)
        from shapely.geometry import shape
        from shapely.ops import unary_union

        kind = obj.get("type") if isinstance(obj, dict) else None
        try:
            if kind == "FeatureCollection":
                geoms = [shape(f["geometry"]) for f in obj.get("features", []) if f.get("geometry")]
                if not geoms:
                    raise InvalidAreaError("the GeoJSON FeatureCollection has no geometries")
                geometry = unary_union(geoms)
            elif kind == "Feature":
                if not obj.get("geometry"):
                    raise InvalidAreaError("the GeoJSON Feature has no geometry")
                geometry = shape(obj["geometry"])
            elif kind in {"Polygon", "MultiPolygon", "Point", "LineString", "MultiPoint",
                          "MultiLineString", "GeometryCollection"}:
                geometry = shape(obj)
            else:
                raise InvalidAreaError(
                    f"not a GeoJSON Geometry, Feature or FeatureCollection (type={kind!r})"
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InvalidAreaError):
                raise
            raise InvalidAreaError(f"malformed GeoJSON: {exc}") from exc
        return cls._make(geometry, zoom, resolution, max_area_km2, name)

    @classmethod
    def from_geodataframe(
        cls,
        gdf,
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area covering the union of a GeoDataFrame's (or GeoSeries') polygons, in any CRS."""
        if getattr(gdf, "crs", None) is None:
            raise InvalidAreaError(
                "the GeoDataFrame has no CRS; set one first, e.g. gdf.set_crs('EPSG:4326')"
            )
        if len(gdf) == 0:
            raise InvalidAreaError("the GeoDataFrame is empty")
        geometry = gdf.to_crs("EPSG:4326").union_all()
        return cls._make(geometry, zoom, resolution, max_area_km2, name)

    @classmethod
    def from_leafmap(
        cls,
        m,
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area from the last shape drawn on a leafmap/ipyleaflet map (its draw control)."""
        feature = None
        roi = getattr(m, "user_roi", None)
        if roi:
            feature = roi
        else:
            drawn = getattr(m, "draw_features", None) or []
            if drawn:
                feature = drawn[-1]
        if not feature:
            raise InvalidAreaError(
                "nothing is drawn on the map: draw a rectangle or polygon with the map's draw tool first"
            )
        return cls.from_geojson(feature, zoom, resolution=resolution, max_area_km2=max_area_km2, name=name)

    @classmethod
    def coerce(
        cls,
        value,
        zoom: int | None = None,
        *,
        resolution: float | None = None,
        max_area_km2: float | None = None,
        name: str | None = None,
    ) -> Area:
        """An area from whatever describes one; the single converter every function uses.

        Parameters
        ----------
        value : Area, bbox, GeoJSON, shapely geometry, GeoDataFrame/GeoSeries or leafmap map
            An :class:`Area` (kept, at ``zoom`` if given); a ``(west, south, east, north)`` bbox in
            degrees; GeoJSON as a dict, text, file path or any object with ``__geo_interface__``;
            a shapely Polygon/MultiPolygon in EPSG:4326; a GeoDataFrame or GeoSeries in any CRS;
            or a leafmap/ipyleaflet map with a drawn shape.
        zoom, resolution, max_area_km2, name
            As in :meth:`from_bbox`.

        Returns
        -------
        Area

        Raises
        ------
        InvalidAreaError
            When ``value`` describes no polygonal area (the message says what was expected).
        """
        kwargs = {"resolution": resolution, "max_area_km2": max_area_km2, "name": name}
        if isinstance(value, Area):
            # the area was checked when it was made; a new zoom does not change its size
            if resolution is not None:
                return cls._make(value.geometry, None, resolution, math.inf, name or value.name)
            if zoom is None or (zoom == value.zoom and not value.default_zoom):
                return value
            return cls._make(value.geometry, zoom, None, math.inf, name or value.name)
        if hasattr(value, "to_crs") and hasattr(value, "crs"):  # GeoDataFrame / GeoSeries
            return cls.from_geodataframe(value, zoom, **kwargs)
        if hasattr(value, "geom_type"):  # a shapely geometry
            return cls.from_geometry(value, zoom=zoom, **kwargs)
        if hasattr(value, "user_roi") or hasattr(value, "draw_features"):  # a leafmap map
            return cls.from_leafmap(value, zoom, **kwargs)
        if isinstance(value, (dict, str, PathLike)) or hasattr(value, "__geo_interface__"):
            return cls.from_geojson(value, zoom, **kwargs)
        return cls.from_bbox(value, zoom, **kwargs)

    # -- validation ---------------------------------------------------------------------------
    @classmethod
    def _make(cls, geometry, zoom, resolution, max_area_km2, name, *, bbox: bool = False) -> Area:
        geometry = _check_polygonal(geometry)
        west, south, east, north = geometry.bounds
        _check_bbox((west, south, east, north))
        if zoom is not None and resolution is not None:
            raise InvalidAreaError("give either zoom or resolution, not both")
        default_zoom = zoom is None and resolution is None
        if resolution is not None:
            zoom = zoom_for_resolution(resolution, (south + north) / 2)
        elif zoom is None:
            zoom = DEFAULT_ZOOM
        try:
            integral = not isinstance(zoom, bool) and float(zoom).is_integer()
        except (TypeError, ValueError):
            integral = False
        if not integral:
            raise InvalidAreaError(f"zoom must be an integer, got {zoom!r}")
        zoom = int(zoom)
        if not 0 <= zoom <= MAX_ZOOM:
            raise InvalidAreaError(f"zoom must be between 0 and {MAX_ZOOM}, got {zoom}")
        if not bbox:
            _check_wrap(geometry)
        limit = check_limit(options.max_area_km2 if max_area_km2 is None else max_area_km2)
        # what gets imaged is the grid over the bounds, not only the polygon: measure both
        area_km2 = max(_geod_area_km2(geometry), box_area_km2(west, south, east, north))
        if area_km2 > limit:
            raise AreaTooLargeError(
                f"the area is {area_km2:,.1f} km² (its bounding box, which is what gets imaged), above the limit "
                f"of {limit:g} km². Pass max_area_km2={math.ceil(area_km2)} (or set "
                "sociogeo.options.max_area_km2) if you mean it, or choose a smaller area."
            )
        return cls(geometry=geometry, zoom=zoom, name=name, default_zoom=default_zoom)

    # -- properties ---------------------------------------------------------------------------
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return tuple(float(v) for v in self.geometry.bounds)

    @property
    def crs(self) -> str:
        """The CRS of :attr:`geometry` and :attr:`bounds`: always ``"EPSG:4326"`` (longitude, latitude)."""
        return "EPSG:4326"

    @property
    def area_km2(self) -> float:
        """Geodesic area in square kilometres."""
        return _geod_area_km2(self.geometry)

    @property
    def resolution_m(self) -> float:
        """Ground metres per pixel at the area's centre latitude."""
        west, south, east, north = self.bounds
        return ground_resolution(self.zoom, (south + north) / 2)

    @property
    def grid(self) -> PixelGrid:
        """The Web-Mercator pixel grid at ``zoom`` that covers the area's bounds."""
        return PixelGrid.from_lonlat_bounds(*self.bounds, zoom=self.zoom)

    def with_zoom(self, zoom: int) -> Area:
        """The same area and name at another zoom level (no size limit is applied)."""
        return Area._make(self.geometry, zoom, None, float("inf"), self.name)

    def to_geodataframe(self):
        """The area as a one-row GeoDataFrame (column ``name``) in EPSG:4326."""
        import geopandas as gpd

        return gpd.GeoDataFrame({"name": [self.name]}, geometry=[self.geometry], crs="EPSG:4326")

    @property
    def __geo_interface__(self):
        return self.geometry.__geo_interface__

    def __repr__(self) -> str:
        w, s, e, n = self.bounds
        label = f"{self.name!r}, " if self.name else ""
        return (
            f"Area({label}bounds=({w:.5f}, {s:.5f}, {e:.5f}, {n:.5f}), zoom={self.zoom}, "
            f"{self.area_km2:.3f} km², {self.resolution_m:.2f} m/px)"
        )


def check_limit(value) -> float:
    """A size limit in km²: a positive number (``math.inf`` switches the check off), else
    :class:`~sociogeo.errors.InvalidAreaError`; 0, negative numbers and NaN are refused, not
    read as "no limit".
    """
    try:
        limit = float(value)
    except (TypeError, ValueError):
        limit = math.nan
    if isinstance(value, bool) or not limit > 0:
        raise InvalidAreaError(
            f"max_area_km2 must be a positive number of square kilometres (math.inf for no limit), got {value!r}"
        )
    return limit


def box_area_km2(west: float, south: float, east: float, north: float) -> float:
    """Ground area of a longitude/latitude box in km² (on the sphere of the Earth's mean radius):
    R² x (east - west in radians) x (sin north - sin south).
    """
    radius_km = 6371.0088
    return radius_km**2 * math.radians(east - west) * abs(math.sin(math.radians(north)) - math.sin(math.radians(south)))


def _check_wrap(geometry) -> None:
    """Refuse polygons that wrap around the antimeridian: an edge jumping more than 180° of
    longitude means the polygon was drawn across ±180°, but as coordinates it spans the globe, so
    its grid would be the whole world's width.
    """
    import shapely

    for ring in shapely.get_rings(shapely.get_parts(geometry)):
        lon = shapely.get_coordinates(ring)[:, 0]
        if len(lon) > 1 and (abs(lon[1:] - lon[:-1]) > 180).any():
            west, _, east, _ = geometry.bounds
            raise InvalidAreaError(
                f"the area crosses the antimeridian (±180°): its coordinates span {east - west:.2f}° of longitude "
                f"(west {west:g}, east {east:g}); this is not supported: split it into two areas at 180°"
            )


def _check_polygonal(geometry):
    from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
    from shapely.geometry.base import BaseGeometry

    if not isinstance(geometry, BaseGeometry):
        raise InvalidAreaError(f"expected a shapely geometry, got {type(geometry).__name__}")
    if geometry.is_empty:
        raise InvalidAreaError("the geometry is empty")
    if isinstance(geometry, GeometryCollection) and not isinstance(geometry, MultiPolygon):
        polys = [g for g in geometry.geoms if isinstance(g, (Polygon, MultiPolygon))]
        if len(polys) != len(geometry.geoms):
            raise InvalidAreaError(
                "the geometry collection holds non-polygon parts; an area must be a polygon"
            )
        from shapely.ops import unary_union

        geometry = unary_union(polys)
    if not isinstance(geometry, (Polygon, MultiPolygon)):
        raise InvalidAreaError(
            f"an area must be a Polygon or MultiPolygon, got a {geometry.geom_type}; "
            "buffer points or lines first (in a metric CRS) to make an area"
        )
    if not geometry.is_valid:
        from shapely import make_valid
        from shapely.validation import explain_validity

        reason = explain_validity(geometry)
        fixed = make_valid(geometry)
        if fixed.is_empty or fixed.geom_type not in {"Polygon", "MultiPolygon"}:
            raise InvalidAreaError(f"the polygon is invalid ({reason}) and cannot be repaired")
        geometry = fixed
    if geometry.area == 0:
        raise InvalidAreaError("the polygon has zero area")
    return geometry


def _to_lonlat(geometry, crs):
    if crs is None:
        raise InvalidAreaError("the geometry's CRS is required, e.g. crs='EPSG:4326'")
    import shapely
    from pyproj import CRS, Transformer

    src = CRS.from_user_input(crs)
    if src.equals(CRS.from_epsg(4326)):
        return geometry
    _check_polygonal(geometry)
    tr = Transformer.from_crs(src, "EPSG:4326", always_xy=True)
    return shapely.transform(geometry, lambda x, y: tr.transform(x, y), interleaved=False)


def _load_geojson(geojson):
    if isinstance(geojson, dict):
        return geojson
    if hasattr(geojson, "__geo_interface__"):
        return geojson.__geo_interface__
    if isinstance(geojson, (str, PathLike)):
        text = str(geojson)
        if text.lstrip().startswith("{"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidAreaError(f"malformed GeoJSON text: {exc}") from exc
        path = Path(text).expanduser()
        if not path.exists():
            raise InvalidAreaError(f"GeoJSON file not found: {path}")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidAreaError(f"{path} is not valid JSON: {exc}") from exc
    raise InvalidAreaError(f"cannot read GeoJSON from a {type(geojson).__name__}")


def grid_of(area_or_grid) -> PixelGrid:
    """The pixel grid of a :class:`PixelGrid` (itself) or of anything :meth:`Area.coerce` accepts."""
    if isinstance(area_or_grid, PixelGrid):
        return area_or_grid
    if area_or_grid is None:
        raise InvalidAreaError(
            "expected an Area (e.g. Area.from_bbox((west, south, east, north))) or a PixelGrid, got None"
        )
    return Area.coerce(area_or_grid).grid
