"""Rebuild the checked-in test rasters in tests/data/ (needs network once; tests never run this).

Source: ``localtileserver/tiler/data/landsat7.tif`` from the ``localtileserver==1.0.0`` wheel on
PyPI (MIT licence): a 3-band uint8 Landsat 7 composite of the San Francisco Bay Area in
EPSG:3857 at 30 m. We keep a ~15 x 15 km crop over San Francisco, the Bay Bridge and Oakland.

Usage: ``python tests/data/make_fixtures.py``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEEL_SPEC = "localtileserver==1.0.0"
MEMBER = "localtileserver/tiler/data/landsat7.tif"
OUTPUT = HERE / "sf_landsat7.tif"
# west, south, east, north in degrees: downtown San Francisco to downtown Oakland
CROP_LONLAT = (-122.435, 37.735, -122.265, 37.870)


def download_source(workdir: Path) -> Path:
    """Download the wheel with pip (no dependencies) and extract the Landsat raster."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_SPEC, "-d", str(workdir)],
        check=True,
    )
    (wheel,) = workdir.glob("localtileserver-1.0.0-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(MEMBER, workdir)
    return workdir / MEMBER


def write_crop(source: Path, output: Path = OUTPUT) -> Path:
    """Write the crop, snapped to whole source pixels, as a tiled deflate GeoTIFF."""
    import rasterio
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    with rasterio.open(source) as src:
        bounds = transform_bounds("EPSG:4326", src.crs, *CROP_LONLAT)
        window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        data = src.read(window=window)
        profile = src.profile | {
            "width": int(window.width),
            "height": int(window.height),
            "transform": src.window_transform(window),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "predictor": 2,
            "zlevel": 9,
        }
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(
            SOURCE=f"{WHEEL_SPEC} {MEMBER} (PyPI, MIT licence)",
            CONTENT="Landsat 7 composite, San Francisco and Oakland",
            CROP_LONLAT=",".join(str(v) for v in CROP_LONLAT),
        )
    return output


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_crop(download_source(Path(tmp)))
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
