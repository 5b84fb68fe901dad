"""How segment() scales with the area, and what the Ray engine costs and gains.

Two measurements (each prints a table; ``--json`` writes the numbers too):

``memory``: peak memory and time against the area's size (default 1, 4, 16, 64, 100 and 256 km²
at zoom 17 at Helsinki's latitude, 0.6 m/px) for the local engine, with scripted stand-in models
(``BlobVLM`` + ``BrightnessSegmenter``: cheap, but they look at every pixel) so only the pipeline's
own cost counts. Imagery comes from a procedural tile server in another process (any place, any
zoom), through the on-disk tile cache. Each area runs in a fresh process; its peak RSS is read
from ``getrusage`` and compared with the smallest area's.

``throughput``: chips per second of the local engine against the Ray engine with 1 and 2 model
actors, with the tiny Qwen2.5-VL and SAM 2 models of ``sociogeo.testing`` on the CPU: Ray's
overhead at one worker and its speed-up at two. On a 2-core machine two actors also compete with
the reader and the driver for the same cores; say so when you quote the figure.

    python benchmarks/bench_scale.py memory
    python benchmarks/bench_scale.py memory --areas 4 100
    python benchmarks/bench_scale.py throughput --chips 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAT, LON = 60.17, 24.94  # Helsinki
HERE = Path(__file__).resolve()


# -- a procedural tile server (its own process, so its memory and CPU are not the pipeline's) -------
def serve(port_file: str) -> None:
    """Serve ``/{layer}/{z}/{x}/{y}.png`` for any tile: one of 64 pre-rendered textured tiles with
    bright blobs, chosen by a hash of the tile (so images differ from chip to chip)."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler

    import numpy as np
    from PIL import Image

    from sociogeo.testing.loopback import serve as loopback

    rng = np.random.default_rng(0)
    tiles = []
    for _ in range(64):
        image = rng.integers(30, 90, (256, 256, 3), dtype=np.uint8)
        for _ in range(3):
            r, c, s = rng.integers(0, 224), rng.integers(0, 224), rng.integers(8, 32)
            image[r:r + s, c:c + s] = 230
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
        tiles.append(buf.getvalue())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            parts = self.path.strip("/").removesuffix(".png").split("/")
            z, x, y = (int(v) for v in parts[-3:])
            body = tiles[(x * 7919 + y * 104729 + z) % len(tiles)]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with loopback(Handler) as server:
        Path(port_file).write_text(server.url)
        threading.Event().wait()


def start_server():
    port_file = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "url"
    process = subprocess.Popen([sys.executable, str(HERE), "serve", str(port_file)])
    deadline = time.monotonic() + 120  # imports and pre-rendering take a while on a busy machine
    while time.monotonic() < deadline and process.poll() is None:
        if port_file.exists() and port_file.read_text():
            return process, port_file.read_text()
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the tile server did not start (exit status {process.poll()})")


def bbox(km2: float, lat: float = LAT, lon: float = LON):
    """A square of ``km2`` square kilometres centred on (lon, lat)."""
    half = math.sqrt(km2) * 1000 / 2
    dlat = half / 111_320.0
    dlon = half / (111_320.0 * math.cos(math.radians(lat)))
    return (lon - dlon, lat - dlat, lon + dlon, lat + dlat)


# -- one area, in a fresh process -------------------------------------------------------------------
def run_area(km2: float, url: str, cache: str, zoom: int) -> dict:
    import resource

    import sociogeo
    from sociogeo.geo.area import Area
    from sociogeo.imagery.source import ImagerySource
    from sociogeo.pipeline.run import segment
    from sociogeo.reasoner import SocioReasoner
    from sociogeo.testing.scripted import BlobVLM, BrightnessSegmenter

    sociogeo.set_progress(False)
    source = ImagerySource(satellite=f"{url}/sat/{{z}}/{{x}}/{{y}}.png", map=f"{url}/map/{{z}}/{{x}}/{{y}}.png",
                           cache_dir=cache)
    reasoner = SocioReasoner(BlobVLM(200), BrightnessSegmenter(200))
    # warm up imports and caches on a tiny area, so the peak below is the run's
    segment(Area.from_bbox(bbox(0.05), zoom=zoom), "bright", reasoner=reasoner, imagery=source, min_area_m2=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    area = Area.from_bbox(bbox(km2), zoom=zoom, max_area_km2=km2 * 1.5)
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = segment(area, "bright", reasoner=reasoner, imagery=source, min_area_m2=0,
                         out=Path(tmp) / "out.parquet")
    seconds = time.perf_counter() - tick
    from sociogeo.pipeline.plan import plan_chips

    return {
        "km2": km2, "zoom": zoom, "pixels": area.grid.width * area.grid.height,
        "chips": len(plan_chips(area.grid, 768)), "entities": len(result), "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": before,
    }


def memory(args) -> list[dict]:
    server, url = start_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-cache-") as cache:
            for km2 in args.areas:
                out = subprocess.run([sys.executable, str(HERE), "run-area", str(km2), url, cache, str(args.zoom)],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(_memory_row(rows[-1], rows[0]), flush=True)
    finally:
        server.kill()
    return rows


def _memory_row(r: dict, first: dict) -> str:
    growth = r["peak_rss_mb"] - first["peak_rss_mb"]
    return (f"{r['km2']:>7.1f} km2 {r['pixels'] / 1e6:>8.1f} Mpx {r['chips']:>6} chips {r['entities']:>7} entities "
            f"{r['seconds']:>8.1f} s {r['chips'] / r['seconds']:>6.2f} chips/s  peak RSS {r['peak_rss_mb']:>7.0f} MB "
            f"({growth:+.0f} MB vs the smallest area)")


# -- throughput: local against Ray with tiny models --------------------------------------------------
def throughput(args) -> list[dict]:
    import sociogeo
    from sociogeo.geo.area import Area
    from sociogeo.imagery.source import ImagerySource
    from sociogeo.pipeline.ray_engine import RayEngine
    from sociogeo.pipeline.run import segment
    from sociogeo.reasoner.model import ReasonerSpec
    from sociogeo.reasoner.vlm.base import GenerationConfig
    from sociogeo.testing.tiny import make_tiny_models

    sociogeo.set_progress(False)
    server, url = start_server()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-tp-") as tmp:
            models = make_tiny_models(Path(tmp) / "models")
            source = ImagerySource(satellite=f"{url}/sat/{{z}}/{{x}}/{{y}}.png",
                                   map=f"{url}/map/{{z}}/{{x}}/{{y}}.png", cache_dir=Path(tmp) / "cache")
            spec = ReasonerSpec(str(models.vlm), str(models.sam), device="cpu", trained=False,
                                generation=GenerationConfig.greedy(max_new_tokens=args.new_tokens))
            side = math.ceil(math.sqrt(args.chips))
            res_m = 0.6 * 2 ** (17 - args.zoom)
            km = side * args.chip_size * res_m / 1000
            area = Area.from_bbox(bbox(km * km * 0.98), zoom=args.zoom)
            runs = [("local", None, spec.load())] + [
                (f"ray, {n} actor(s)", RayEngine(num_actors=n, gpus_per_actor=0, readers=1), spec)
                for n in (1, 2)]
            if any(engine is not None for _, engine, _ in runs):
                import ray

                ray.init(num_cpus=max(os.cpu_count() or 2, 4), include_dashboard=False, log_to_driver=False)
            for label, engine, reasoner in runs:
                tick = time.perf_counter()
                segment(area, "park", reasoner=reasoner, imagery=source, engine=engine, chip_size=args.chip_size,
                        batch_size=args.batch_size)
                seconds = time.perf_counter() - tick
                from sociogeo.pipeline.plan import plan_chips

                n = len(plan_chips(area.grid, args.chip_size))
                rows.append({"engine": label, "chips": n, "seconds": seconds, "chips_per_s": n / seconds})
                print(f"{label:>18}: {n} chips in {seconds:6.1f} s = {n / seconds:5.2f} chips/s", flush=True)
    finally:
        server.kill()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory", help="peak memory and time against the area")
    m.add_argument("--areas", type=float, nargs="+", default=[1, 4, 16, 64, 100, 256], help="km² per run")
    m.add_argument("--zoom", type=int, default=17)
    t = sub.add_parser("throughput", help="chips/s: local vs Ray with 1 and 2 actors, tiny models on the CPU")
    t.add_argument("--chips", type=int, default=16)
    t.add_argument("--chip-size", type=int, default=256)
    t.add_argument("--zoom", type=int, default=17)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--new-tokens", type=int, default=32, help="answer length per stage, tokens (tiny models)")
    for p in (m, t):
        p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    s = sub.add_parser("serve")
    s.add_argument("port_file")
    r = sub.add_parser("run-area")
    r.add_argument("km2", type=float)
    r.add_argument("url")
    r.add_argument("cache")
    r.add_argument("zoom", type=int)
    args = parser.parse_args(argv)
    if args.what == "serve":
        serve(args.port_file)
    elif args.what == "run-area":
        print(json.dumps(run_area(args.km2, args.url, args.cache, args.zoom)))
    else:
        rows = memory(args) if args.what == "memory" else throughput(args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
