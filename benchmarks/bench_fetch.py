"""Tile fetching: client CPU per tile and throughput, cold and warm cache, sociogeo vs contextily; peak
memory of the streamed GeoTIFF writer.

Everything runs offline against the loopback tile server (sociogeo.testing.TileServer) serving
tests/data/sf_landsat7.tif. The server runs in this (parent) process, threaded, with TCP_NODELAY on its
sockets and its rendered tiles cached before any measurement, so it answers from memory: the server's
own CPU per tile is reported beside the client's to show it is not the bottleneck. Each measurement
runs in a fresh Python subprocess with an empty client cache: ``cold`` is its first fetch of the area
(every tile downloaded and decoded), ``warm`` a second fetch of the same area in the same process
(every tile read back from the client's disk cache: both sociogeo, by default, and contextily keep the
decoded pixels, sociogeo beside the tile's bytes in one checked file, contextily as joblib pickles).
Each row is measured ``--repeat`` times, alternating the clients, and the median is printed with the
range: on a small shared machine single runs move by a factor of two.

Client CPU is the process CPU time (``time.process_time()``, all threads) plus that of any worker
processes it started (contextily with ``n_connections > 1`` downloads in joblib worker processes), per
tile. Peak RSS is sampled every 2 ms in the measuring process.

Usage: ``python benchmarks/bench_fetch.py [--zoom 17] [--km2 16] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
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


def children_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every live descendant process, by pid."""
    import psutil

    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        out[child.pid] = times.user + times.system
    return out


def timed(run) -> dict:
    """Wall and CPU seconds of ``run()`` (this process's threads plus its worker processes)."""
    children_before = children_cpu_s()
    cpu = time.process_time()
    start = time.perf_counter()
    pixels = run()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    children = sum(t - children_before.get(pid, 0.0) for pid, t in children_cpu_s().items())
    return {"seconds": seconds, "cpu_s": cpu + children, "workers_cpu_s": children, "pixels": pixels}


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
    out = {"tiles": area.grid.n_tiles()}
    try:
        with PeakRSS() as rss:
            out["cold"] = timed(lambda: _run(kind, config, area, bbox, url, zoom, tmp))
        out["peak_rss_mb"], out["baseline_rss_mb"] = rss.peak_mb, rss.baseline_mb
        if config.get("warm", True):
            out["warm"] = timed(lambda: _run(kind, config, area, bbox, url, zoom, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _run(kind, config, area, bbox, url, zoom, tmp) -> int:
    """Fetch once; return the number of pixels fetched."""
    if kind == "sociogeo":
        from sociogeo.imagery.tiles import fetch_mosaic

        mosaic = fetch_mosaic(area.grid, url, cache_dir=tmp / "cache", max_workers=config.get("workers"))
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
    """Run one measurement in a subprocess; also the server's CPU seconds meanwhile (it lives here)."""
    server_cpu = time.process_time()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    server_cpu = time.process_time() - server_cpu
    if proc.returncode != 0:
        raise RuntimeError(f"{config['kind']} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["server_cpu_s"] = server_cpu
    return result


def median_run(runs: list[dict]) -> dict:
    """One result whose figures are the medians of ``runs`` (with ``min_s``/``max_s`` of the seconds)."""
    import statistics

    out = {"tiles": runs[0]["tiles"], "server_cpu_s": statistics.median(r["server_cpu_s"] for r in runs)}
    for state in ("cold", "warm"):
        seconds = [r[state]["seconds"] for r in runs]
        out[state] = {key: statistics.median(r[state][key] for r in runs)
                      for key in ("seconds", "cpu_s", "workers_cpu_s", "pixels")}
        out[state] |= {"min_s": min(seconds), "max_s": max(seconds)}
    return out


def decode_costs(url_template: str, server, zoom: int, km2: float) -> dict:
    """Milliseconds per tile to decode the served PNGs: sociogeo's decode_tile vs contextily's way."""
    import numpy as np
    from PIL import Image

    from sociogeo.geo.area import Area
    from sociogeo.imagery.tiles import decode_tile

    tiles = [server.render("sat", *t) for t in Area.from_bbox(bbox_km2(km2), zoom=zoom).grid.tiles()]
    tiles = [t for t in tiles if t is not None]

    def contextily_decode(data):  # what contextily's _fetch_tile does with a response body
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))

    from sociogeo.imagery.cache import TileCache
    from sociogeo.imagery.tiles import pack_tile, unpack_tile

    cache = TileCache(tempfile.mkdtemp(prefix="bench-decode-"))
    for i, data in enumerate(tiles):
        cache.put("k", zoom, i, 0, data, decoded=pack_tile(decode_tile(data)))

    def cached_read(i):  # a warm hit in sociogeo's cache: file read, both digests, unpack
        return cache.get("k", zoom, i, 0, decode=decode_tile, unpack=unpack_tile)

    out = {}
    for name, decode, items in (("sociogeo decode_tile", decode_tile, tiles),
                                ("contextily (PIL convert RGBA)", contextily_decode, tiles),
                                ("sociogeo cached read (no decode)", cached_read, range(len(tiles)))):
        best = math.inf
        for _ in range(5):
            start = time.process_time()
            for item in items:
                decode(item)
            best = min(best, time.process_time() - start)
        out[name] = 1000 * best / len(tiles)
    shutil.rmtree(cache.root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=int, default=17)
    parser.add_argument("--km2", type=float, default=16.0, help="area of the throughput comparison")
    parser.add_argument("--repeat", type=int, default=5, help="runs per client; the median is printed")
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
    load_before = os.getloadavg()
    with TileServer({"sat": RASTER}) as server:
        url = server.url_template("sat")
        for km2 in {args.km2, *writer_sizes}:  # warm the server's tile cache (not measured)
            fetch_mosaic(Area.from_bbox(bbox_km2(km2), zoom=args.zoom).grid, url, cache_dir=False)
        runs = [
            ("sociogeo fetch_mosaic, 8 threads (default)", {"kind": "sociogeo", "workers": 8}),
            ("sociogeo fetch_mosaic, 1 thread", {"kind": "sociogeo", "workers": 1}),
            ("contextily.bounds2img, n_connections=1 (default)", {"kind": "contextily"}),
            ("contextily.bounds2img, n_connections=8", {"kind": "contextily", "n_connections": 8}),
        ]
        results = {label: [] for label, _ in runs}
        for i in range(args.repeat):  # clients alternate, so a busy spell of the machine hits all alike
            for label, config in runs:
                config |= {"url": url, "zoom": args.zoom, "km2": args.km2, "bbox": bbox_km2(args.km2)}
                results[label].append(measure(config))
            print(f"round {i + 1} of {args.repeat} done", file=sys.stderr, flush=True)
        rows = [(label, median_run(results[label])) for label, _ in runs]
        writer_rows = []
        for km2 in writer_sizes:
            config = {"kind": "sociogeo-geotiff", "url": url, "zoom": args.zoom, "km2": km2,
                      "bbox": bbox_km2(km2), "warm": False}
            writer_rows.append((f"sociogeo write_geotiff (streamed), {km2:g} km2", km2, measure(config)))
        decode = decode_costs(url, server, args.zoom, args.km2)
    load_after = os.getloadavg()

    tiles = rows[0][1]["tiles"]
    print(f"\nLoopback tile server (threaded, TCP_NODELAY, tiles pre-rendered), zoom {args.zoom}, "
          f"{args.km2:g} km2 = {tiles} tiles; one subprocess per row, cold then warm client cache.")
    print(f"{os.cpu_count()} CPUs shared by client and server; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after.\n")
    header = (f"{'client':<50} {'cache':<5} {'s':>6} {'range':>11} {'tiles/s':>8} {'client CPU ms/tile':>19} "
              f"{'of it workers':>14} {'server CPU ms/tile':>19}")
    print(header)
    print("-" * len(header))
    for label, r in rows:
        for state in ("cold", "warm"):
            m = r[state]
            server = f"{1000 * r['server_cpu_s'] / r['tiles']:>19.2f}" if state == "cold" else ""
            spread = f"{m['min_s']:.2f}-{m['max_s']:.2f}"
            print(f"{label if state == 'cold' else '':<50} {state:<5} {m['seconds']:>6.2f} {spread:>11} "
                  f"{r['tiles'] / m['seconds']:>8.0f} {1000 * m['cpu_s'] / r['tiles']:>19.2f} "
                  f"{1000 * m['workers_cpu_s'] / r['tiles']:>14.2f} {server}")
    print(f"\nmedians of {args.repeat} runs, with the range of the seconds; server CPU: the parent process's CPU "
          "time while the row ran, per tile (the warm fetch asks the server nothing).")

    print("\nDecoding the served PNG tiles (RGBA, 256 px), best of 5 passes, CPU ms per tile:")
    for name, ms in decode.items():
        print(f"  {name:<32} {ms:6.3f}")

    print("\nStreamed GeoTIFF writer, cold cache:\n")
    header = f"{'measurement':<50} {'km2':>5} {'tiles':>6} {'Mpx':>6} {'s':>6} {'peak RSS MB':>12} " \
             f"{'after imports':>14} {'delta':>7}"
    print(header)
    print("-" * len(header))
    for label, km2, r in writer_rows:
        m = r["cold"]
        delta = r["peak_rss_mb"] - r["baseline_rss_mb"]
        print(f"{label:<50} {km2:>5g} {r['tiles']:>6} {m['pixels'] / 1e6:>6.1f} {m['seconds']:>6.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r['baseline_rss_mb']:>14.0f} {delta:>7.0f}")
    print("\npeak RSS: the measuring process's resident set sampled every 2 ms; 'after imports' is its RSS "
          "before fetching, 'delta' the growth while fetching.")


if __name__ == "__main__":
    main()
