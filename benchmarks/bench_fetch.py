"""Tile fetching throughput and memory: sociogeo vs contextily, and the streamed GeoTIFF writer.

Everything runs offline against the loopback tile server (sociogeo.testing.TileServer) serving
tests/data/sf_landsat7.tif. The server runs in this process and its tile cache is warmed first,
so the clients, not on-the-fly rendering, set the pace. Each measurement runs in a fresh Python
subprocess with a cold client cache, so peak RSS (``ru_maxrss``) belongs to that measurement.

Usage: ``python benchmarks/bench_fetch.py [--zoom 17]``
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RASTER = ROOT / "tests" / "data" / "sf_landsat7.tif"
CENTRE = (-122.36, 37.80)  # lon, lat: San Francisco Bay between SF and Oakland, inside the raster


def bbox_km2(km2: float) -> tuple[float, float, float, float]:
    """A square (west, south, east, north) of ``km2`` square kilometres around CENTRE."""
    lon, lat = CENTRE
    half_km = math.sqrt(km2) / 2
    dlat = half_km / 110.574
    dlon = half_km / (111.320 * math.cos(math.radians(lat)))
    return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)


# -- child side: one measurement per process ------------------------------------------------------------
class PeakRSS:
    """Samples this process's resident set size every ``interval_s`` seconds in a thread.

    ``ru_maxrss`` cannot be used: on Linux a child starts with its parent's peak (fork copies it
    and exec keeps it), and the parent here holds the tile server.
    """

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self.baseline_mb = self.peak_mb = self.now_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.now_mb())
            time.sleep(self._interval_s)

    def __enter__(self) -> PeakRSS:
        self.baseline_mb = self.peak_mb = self.now_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.now_mb())


def child(config: dict) -> dict:
    import numpy as np  # noqa: F401 (imported before the baseline, like every library below)
    import rasterio  # noqa: F401
    import requests  # noqa: F401

    import sociogeo
    from sociogeo.geo.area import Area

    sociogeo.options.progress = False
    kind, url, zoom = config["kind"], config["url"], config["zoom"]
    bbox = tuple(config["bbox"])
    area = Area.from_bbox(bbox, zoom=zoom)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    if kind.startswith("contextily"):
        import contextily

        contextily.set_cache_dir(str(tmp / "ctx-cache"))
    else:
        import sociogeo.imagery
    try:
        with PeakRSS() as rss:
            start = time.perf_counter()
            pixels = _run(kind, config, area, bbox, url, zoom, tmp)
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": seconds, "peak_rss_mb": rss.peak_mb, "baseline_rss_mb": rss.baseline_mb,
            "pixels": pixels, "tiles": area.grid.n_tiles()}


def _run(kind, config, area, bbox, url, zoom, tmp) -> int:
    """Fetch once; return the number of pixels fetched."""
    if kind == "sociogeo":
        from sociogeo.imagery.tiles import fetch_mosaic

        mosaic = fetch_mosaic(area.grid, url, cache_dir=tmp / "cache")
        pixels = mosaic.image.shape[0] * mosaic.image.shape[1]
    elif kind == "sociogeo-geotiff":
        from sociogeo.imagery import write_geotiff

        result = write_geotiff(area, url, tmp / "sat.tif", cache_dir=tmp / "cache")
        pixels = result.grid.width * result.grid.height
    elif kind.startswith("contextily"):
        import contextily

        image, _extent = contextily.bounds2img(*bbox, zoom=zoom, source=url, ll=True,
                                               n_connections=config.get("n_connections", 1))
        pixels = image.shape[0] * image.shape[1]
    else:
        raise ValueError(kind)
    return pixels


# -- parent side ----------------------------------------------------------------------------------------
def measure(config: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{config['kind']} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=int, default=17)
    parser.add_argument("--km2", type=float, default=4.0, help="area of the throughput comparison")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    import sociogeo
    from sociogeo.geo.area import Area
    from sociogeo.imagery.tiles import fetch_mosaic
    from sociogeo.testing import TileServer

    sociogeo.options.progress = False
    writer_sizes = [1.0, 4.0, 16.0]
    with TileServer({"sat": RASTER}) as server:
        url = server.url_template("sat")
        for km2 in {args.km2, *writer_sizes}:  # warm the server's tile cache (not measured)
            fetch_mosaic(Area.from_bbox(bbox_km2(km2), zoom=args.zoom).grid, url, cache_dir=False)
        runs = [
            ("sociogeo fetch_mosaic (in memory)", {"kind": "sociogeo", "km2": args.km2}),
            ("sociogeo fetch_mosaic (in memory)", {"kind": "sociogeo", "km2": 16.0}),
            ("contextily.bounds2img, n_connections=1 (default)", {"kind": "contextily", "km2": args.km2}),
            ("contextily.bounds2img, n_connections=8", {"kind": "contextily", "km2": args.km2, "n_connections": 8}),
            *[(f"sociogeo write_geotiff (streamed), {km2:g} km2", {"kind": "sociogeo-geotiff", "km2": km2})
              for km2 in writer_sizes],
        ]
        rows = []
        for label, config in runs:
            config |= {"url": url, "zoom": args.zoom, "bbox": bbox_km2(config["km2"])}
            result = measure(config)
            rows.append((label, config["km2"], result))

    print(f"\nLoopback tile server, zoom {args.zoom}, cold client caches, one subprocess per row "
          f"({Path(RASTER).name}, server cache warm)\n")
    header = f"{'measurement':<50} {'km2':>5} {'tiles':>6} {'Mpx':>6} {'s':>6} {'tiles/s':>8} " \
             f"{'peak RSS MB':>12} {'after imports':>14} {'delta':>7}"
    print(header)
    print("-" * len(header))
    for label, km2, r in rows:
        delta = r["peak_rss_mb"] - r["baseline_rss_mb"]
        print(f"{label:<50} {km2:>5g} {r['tiles']:>6} {r['pixels'] / 1e6:>6.1f} {r['seconds']:>6.2f} "
              f"{r['tiles'] / r['seconds']:>8.0f} {r['peak_rss_mb']:>12.0f} {r['baseline_rss_mb']:>14.0f} "
              f"{delta:>7.0f}")
    print("\npeak RSS: the measuring process's resident set sampled every 2 ms; 'after imports' is its RSS "
          "before fetching, 'delta' the growth while fetching.\ncontextily with n_connections>1 downloads in "
          "worker processes, whose memory is not in its row.")


if __name__ == "__main__":
    main()
