"""``sociogeo fetch``: the satellite image and the map of an area on one grid, as GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

from .args import add_area_arguments, add_imagery_arguments, check_output_dir, imagery_source, say


def add(subparsers, parents) -> None:
    """Register ``sociogeo fetch``."""
    p = subparsers.add_parser(
        "fetch",
        parents=parents,
        help="download a satellite image and a map image of an area on one grid, as GeoTIFFs",
        description=(
            "Fetch a satellite image and a street-map image of a bounding box on one Web-Mercator "
            "pixel grid and write OUT/satellite.tif, OUT/map.tif and OUT/preview.png. Tiles (or your "
            "own --satellite raster, warped onto the grid) are streamed to disk, so memory does not "
            "grow with the area. --cog writes cloud-optimised GeoTIFFs."
        ),
    )
    add_area_arguments(p)
    add_imagery_arguments(p)
    p.add_argument("--osm-landuse", action="store_true", help="with --map osm: colour land use")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the tile cache")
    p.add_argument("--cog", action="store_true",
                   help="write cloud-optimised GeoTIFFs (internal overviews, ready for object storage and GIS)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(handler=run)


def run(args) -> int:
    """``sociogeo fetch``: write OUT/satellite.tif, OUT/map.tif and OUT/preview.png; returns 0."""
    from ..geo.area import Area
    from ..imagery.geotiff import write_array_geotiff, write_geotiff, write_raster_geotiff
    from ..imagery.pair import FILENAMES
    from ..imagery.preview import write_preview

    out = check_output_dir(args.out)
    source = imagery_source(args, no_cache=args.no_cache)
    area = source.choose_zoom(Area.from_bbox(args.bbox, zoom=args.zoom, max_area_km2=args.max_area_km2))
    # both layers are checked first, so a typo fails before minutes of downloading
    source.check(area.zoom)
    satellite, map_provider = source.providers()

    grid = area.grid
    what = "raster" if source.raster is not None else f"{grid.n_tiles()} tiles per layer"
    say(args, f"{area}: {grid.width} x {grid.height} px, {what}")
    if source.raster is not None:
        results = [write_raster_geotiff(area, source.raster, out / FILENAMES["satellite"], cog=args.cog,
                                        offline=source.offline)]
    else:
        results = [write_geotiff(area, satellite, out / FILENAMES["satellite"], cache_dir=source.cache_dir,
                                 offline=source.offline, desc="satellite tiles", layer="satellite", cog=args.cog)]
    if map_provider is None:
        from ..osm.render import render_osm_map

        image, attribution = render_osm_map(grid, source=source.osm_source, landuse=source.osm_landuse)
        map_path = write_array_geotiff(out / FILENAMES["map"], image, grid, area=area, cog=args.cog, tags={
            "LAYER": "map", "PROVIDER": "osm", "ATTRIBUTION": attribution, "MISSING_TILES": "[]"})
    else:
        results.append(write_geotiff(area, map_provider, out / FILENAMES["map"], cache_dir=source.cache_dir,
                                     offline=source.offline, desc="map tiles", layer="map", cog=args.cog))
        map_path = results[-1].path
    preview = write_preview(results[0].path, map_path, out / "preview.png")

    for result in results:
        note = f", {len(result.missing)} tiles missing" if result.missing else ""
        say(args, f"wrote {result.path} ({result.provider.name}, {result.valid_fraction:.1%} valid{note})",
            always=True)
    if map_provider is None:
        say(args, f"wrote {map_path} (rendered from OpenStreetMap data)", always=True)
    say(args, f"wrote {preview}", always=True)
    return 0
