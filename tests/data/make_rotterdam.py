"""Rebuild the real sub-metre imagery of Rotterdam in tests/data/ (needs network once; tests never run this).

Source: ``solaris/data/preproc_tutorial/{ms1,pan1,ms3}.tif`` from the ``fair-solaris==0.4.2`` sdist on
PyPI (Apache-2.0; a maintained release of CosmiQ Works' solaris). They are SpaceNet 6 (Rotterdam)
Maxar WorldView-2 crops, distributed by SpaceNet under CC BY-SA 4.0. See tests/data/README.md.

- ``rotterdam_ms.tif``: ms1.tif, 4 bands (the file's band 3, 2, 1 show natural colour), 300 x 300 px
  at 1.0 m, EPSG:32631. Stored as uint16 instead of the source's float64: every value is a whole
  number from 1 to 2046, so the conversion is exact (checked below).
- ``rotterdam_pan.tif``: pan1.tif, the panchromatic band of the same footprint, 600 x 600 px at
  0.5 m, uint16, unchanged.
- ``rotterdam_port_ms.tif``: the upper 160 rows of ms3.tif (the port, west of the first), whose
  upper part is 0 in every band: pixels outside the scene that the file does not declare as nodata
  (tests pass ``nodata=0``). uint16 as above.

The sdist's setup.py refuses to run without GDAL's ``gdal-config`` on the PATH (it only prepares
metadata here, nothing is built or installed), so the script puts a stand-in that prints rasterio's
GDAL version on the PATH for the one ``pip download`` call.

Usage: ``python tests/data/make_rotterdam.py [--sdist fair-solaris-0.4.2.tar.gz]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SDIST_SPEC = "fair-solaris==0.4.2"
MEMBER = "fair-solaris-0.4.2/solaris/data/preproc_tutorial/{}.tif"
OUTPUTS = {"ms1": ("rotterdam_ms.tif", None), "pan1": ("rotterdam_pan.tif", None),
           "ms3": ("rotterdam_port_ms.tif", 160)}


def download_sdist(workdir: Path) -> Path:
    """The sdist, downloaded with pip (no dependencies, nothing installed)."""
    import rasterio

    shim = workdir / "bin"
    shim.mkdir()
    (shim / "gdal-config").write_text(f"#!/bin/sh\necho {rasterio.__gdal_version__}\n")
    (shim / "gdal-config").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                    SDIST_SPEC, "-d", str(workdir)], check=True, env=env)
    (sdist,) = workdir.glob("fair-solaris-0.4.2.tar.gz")
    return sdist


def write(source: Path, output: Path, rows: int | None) -> None:
    """Copy ``rows`` rows (all when None) of ``source`` as a tiled deflate uint16 GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(source) as src:
        window = Window(0, 0, src.width, rows or src.height)
        data = src.read(window=window)
        if not np.array_equal(data, np.round(data)) or data.min() < 0 or data.max() > 65535:
            raise SystemExit(f"{source.name} does not fit uint16 exactly")
        profile = {
            "driver": "GTiff", "dtype": "uint16", "count": src.count, "width": int(window.width),
            "height": int(window.height), "crs": src.crs, "transform": src.window_transform(window),
            "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate", "predictor": 2,
            "zlevel": 9, "interleave": "pixel",
        }
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(data.astype(np.uint16))
        dst.update_tags(SOURCE=f"{SDIST_SPEC}:{source.name}", ATTRIBUTION="SpaceNet 6, Maxar (CC BY-SA 4.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="a fair-solaris-0.4.2.tar.gz already downloaded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sdist = args.sdist or download_sdist(workdir)
        print(f"{sdist.name}: sha256 {hashlib.sha256(sdist.read_bytes()).hexdigest()}")
        with tarfile.open(sdist) as tar:
            for name, (output, rows) in OUTPUTS.items():
                member = MEMBER.format(name)
                tar.extract(member, workdir, filter="data")
                source = workdir / member
                print(f"{member}: sha256 {hashlib.sha256(source.read_bytes()).hexdigest()}")
                write(source, HERE / output, rows)
                print(f"wrote {HERE / output} ({(HERE / output).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
