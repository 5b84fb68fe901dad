"""Explorer: a Jupyter map widget to draw an area, ask a query and read the model's answers.

Built on leafmap's ipyleaflet backend. Everything its buttons do is plain Python as well::

    ex = sociogeo.Explorer()
    ex                                   # shows the map, query box, Run/Export buttons, status line
    ex.area = (24.935, 60.164, 24.953, 60.179)   # or draw a rectangle/polygon on the map
    ex.run("park")                       # a GeoDataFrame; polygons appear on the map
    ex.results                           # every run so far, one GeoDataFrame (EPSG:4326)
    ex.export("parks.gpkg")              # .gpkg, .geojson/.json or .parquet

Errors: :meth:`Explorer.run`, :meth:`Explorer.export` and the ``area`` setter write the problem
to the status line and then raise, like any Python function. The buttons and the draw tool catch
everything instead: a :class:`~sociogeo.errors.SociogeoError` only shows its message in the status
line (it says what to do), any other error shows its type and message there and its traceback in
the widget's log, so a click never ends in a lost traceback.

The log (a plain-text accordion under the map) also lists every run: query, area, chips, result
count and the files written. A new area resets the progress bar and removes the previous area's
map image and stage-1 boxes; result layers stay, since ``results`` keeps every run. Queries,
provider names and the model's text are HTML-escaped wherever the widget shows HTML (popups,
layer names, status line).

Images never travel through a local tile server: the base maps are the providers' own tiles, and
the map image the model saw is a small PNG data URL, so the widget works on remote Jupyter too.
Your own raster as the satellite layer (a GeoTIFF/COG, a STAC item...) is shown the same way: an
image overlay of the current view, read in the kernel and sent as a PNG data URL
(:mod:`sociogeo.analysis.raster_view`).
"""

from __future__ import annotations

import datetime as _dt
import html
import inspect
import json
import math
import traceback
import warnings
from pathlib import Path

from .. import defaults
from .._optional import require
from ..errors import ConfigError, InvalidAreaError, SociogeoError
from ..options import options
from ._leaflet import placeholder_base, tile_layer
from .raster_view import png_data_url  # noqa: F401 (kept importable from here, where it was)

_PURPOSE = "the map explorer"

#: Longest reasoning text shown in a popup, in characters; the full text stays in ``results``.
POPUP_MAX_CHARS = 1500
#: Longest side of the map-image overlay, in pixels (a data URL, so keep it small).
OVERLAY_MAX_PX = 512
#: Line and fill colours given to queries in order of first use (Okabe-Ito, readable on imagery).
QUERY_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#D55E00", "#CC79A7", "#0072B2")
#: Largest extent of a set area on screen after the map zooms to it, in pixels.
FIT_PX = 500
#: Basename of the file the Export button writes into the working directory.
EXPORT_BASENAME = "sociogeo_results"

# segment() arguments the Explorer sets itself; everything else may come through **segment_kwargs
_MANAGED = {"area_or_pair", "query", "reasoner", "imagery", "zoom", "callback", "settings"}
# library deprecations are passed on but not announced in the status line
_QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
_STATUS_COLOURS = {"info": "#444", "busy": "#1f5fa8", "success": "#1b7a33", "warning": "#9a6700", "error": "#b00020"}


class Explorer:
    """An interactive map to segment ``query`` in drawn areas and inspect the result.

    ``reasoner`` is a ready :class:`~sociogeo.SocioReasoner`; without one, ``vlm``/``sam`` (hub
    ids, local folders, backends; default: the released SocioReasoner-3B and SAM 2) are loaded
    with :meth:`SocioReasoner.from_pretrained` on the first run, on ``device``.

    ``imagery`` (an :class:`~sociogeo.ImagerySource`) or the keyword settings ``satellite`` and
    ``map`` (tile providers: xyzservices names or ``{z}/{x}/{y}`` URL templates; ``map="osm"``
    renders the map locally from ``osm_source``), ``cache_dir`` and ``offline`` say where the
    model's imagery comes from; the map shows the two layers as switchable base layers, with
    ``basemaps`` (a list of providers, or a dict label -> provider) as further base layers.
    ``satellite`` may be your own raster (a GeoTIFF/COG path or URL, a STAC item, a DataArray,
    a RasterSource): the map then shows it as an image overlay of the current view, rendered in
    the kernel (no tile server), centred on the raster unless ``center`` is given.
    ``center`` is (lat, lon) in degrees, as in leafmap; ``zoom`` the map's view zoom. Drawn areas
    are fetched at ``imagery_zoom`` (default 17, about 1.2 m/pixel at the equator; with a raster,
    the zoom nearest its resolution). ``offline`` also applies to the model loader and to the
    map: tile layers served from elsewhere than this machine and the search box are left out (the
    status line and :attr:`hidden_layers` name them). ``segment_kwargs`` (``chip_size``,
    ``overlap``, ``batch_size``, ``min_area_m2``, ``simplify_m``, ``max_area_km2``, ...) go to
    :func:`sociogeo.segment`.

    ``widget`` is the whole UI (shown when the explorer is the last expression of a cell),
    ``map`` the leafmap Map, ``status`` the status line's text.
    """

    def __init__(  # noqa: PLR0913 (public API: the keyword forms users already write)
        self,
        reasoner=None,
        *,
        vlm=None,
        sam=None,
        device=None,
        imagery=None,
        satellite=None,
        map=None,  # shadows the builtin: the user's word for it, as in fetch_pair
        basemaps=None,
        center=None,
        zoom=None,
        imagery_zoom: int | None = None,
        osm_source=None,
        cache_dir=None,
        offline: bool | None = None,
        **segment_kwargs,
    ):
        from ..geo.grid import MAX_ZOOM
        from ..imagery.providers import resolve_provider
        from ..imagery.source import ImagerySource

        if reasoner is not None and (vlm is not None or sam is not None):
            raise ConfigError("give either a ready reasoner or vlm=/sam= to load one, not both")
        if imagery_zoom is not None and (isinstance(imagery_zoom, bool) or not isinstance(imagery_zoom, int)
                                         or not 0 <= imagery_zoom <= MAX_ZOOM):
            raise ConfigError(f"imagery_zoom must be an integer between 0 and {MAX_ZOOM}, got {imagery_zoom!r}")
        _check_segment_kwargs(segment_kwargs)

        self._reasoner = reasoner
        self._vlm, self._sam, self._device = vlm, sam, device
        self.imagery = ImagerySource.coerce(imagery, satellite=satellite, map=map, osm_source=osm_source,
                                            cache_dir=cache_dir, offline=offline)
        self.imagery_zoom = imagery_zoom
        self.segment_kwargs = dict(segment_kwargs)

        # resolve now, so a misspelt provider fails here rather than at the first run
        sat_provider, map_provider = self.imagery.providers()
        if map_provider is None:  # the map is rendered from OSM data; the view shows OSM's own tiles
            map_provider = resolve_provider(defaults.MAP)
        extra = _basemap_specs(basemaps)
        extra_providers = {label: resolve_provider(spec) for label, spec in extra.items()}

        self._area = None
        self._drawn = None  # the GeoJSON feature the area came from, when drawn
        self._runs: dict = {}  # (query, area key) -> GeoDataFrame of that run
        self._results = None
        self._colours: dict[str, str] = {}
        self._result_layers: dict = {}
        self._area_layer = None
        self._overlay = None
        self._stage1_boxes: dict = {}  # (query, area key) -> GeoJSON features
        self._boxes_layer = None
        self._split = None
        self._chips_run = 0
        self.status = ""

        self.raster_view = None  # the RasterView showing a raster satellite layer
        if self.imagery.raster is not None and center is None:
            from .raster_view import view_center, view_zoom

            center = view_center(self.imagery.raster)
            zoom = view_zoom(self.imagery.raster) if zoom is None else zoom
        self._build_ui(sat_provider, map_provider, extra_providers, center, zoom)

    # -- the UI ---------------------------------------------------------------------------------
    def _build_ui(self, sat_provider, map_provider, extra_providers, center, zoom):
        widgets = require("ipywidgets", purpose=_PURPOSE)

        self.map = self._build_map(sat_provider, map_provider, extra_providers, center, zoom)
        controls = self._build_controls()
        self._progress = widgets.IntProgress(value=0, min=0, max=1, description="",
                                             layout=widgets.Layout(width="260px"))
        self._status = widgets.HTML()
        self._log = widgets.Output()
        log_box = widgets.Accordion(children=[self._log])
        log_box.set_title(0, "Log")
        log_box.selected_index = None
        status = widgets.HBox([self._progress, self._status])
        self.widget = widgets.VBox([controls, self.map, status, log_box])
        hint = "Draw a rectangle or polygon on the map, type a query and press Run."
        if self.hidden_layers:
            hint = (f"Offline: not showing {', '.join(self.hidden_layers)}, which would be fetched from the "
                    f"internet; each run shows its street map over its area. {hint}")
        self._set_status(hint)

    def _build_map(self, sat_provider, map_provider, extra_providers, center, zoom):
        """A leafmap Map: satellite and street-map base layers, rectangle/polygon drawing."""
        ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
        widgets = require("ipywidgets", purpose=_PURPOSE)
        leafmap = require("leafmap.leafmap", purpose=_PURPOSE)

        offline = options.offline if self.imagery.offline is None else bool(self.imagery.offline)
        self.hidden_layers = []  # offline: the tile layers left out because they are on the internet

        def layer(provider, name):  # offline, the browser is never sent to a tile server elsewhere
            if offline and not provider.served_here:
                self.hidden_layers.append(f"{name} ({provider.host})")
                return None
            return tile_layer(ipyleaflet, provider, name=_html(name))

        self._map_layer = layer(map_provider, f"Street map ({map_provider.name})")
        if self.imagery.raster is not None:
            from .raster_view import RasterView

            self.raster_view = RasterView(self.imagery.raster, name=_satellite_name(sat_provider),
                                          offline=self.imagery.offline)
            self._sat_layer = self.raster_view.layer
            # the raster is an overlay above the street map, the only base layer
            layers = [self._map_layer, self._sat_layer]
        else:
            self._sat_layer = layer(sat_provider, _satellite_name(sat_provider))
            layers = [self._sat_layer, self._map_layer]  # two base layers, the satellite first
        layers += [layer(provider, label) for label, provider in extra_providers.items()]
        layers = [la for la in layers if la is not None]
        bases = [la for la in layers if isinstance(la, ipyleaflet.TileLayer)]
        # leafmap starts from a base layer: without one that may be shown, a stand-in removed at once
        base = bases[0] if bases else placeholder_base(ipyleaflet)
        base_name = base.name
        view = {"center": list(center)} if center is not None else {}
        if zoom is not None:
            view["zoom"] = zoom
        with warnings.catch_warnings():
            # leafmap hands its own options on to ipyleaflet, which traitlets flags on every Map
            warnings.filterwarnings("ignore", "Passing unrecognized arguments", DeprecationWarning)
            m = leafmap.Map(basemap=base, draw_control=True, layers_control=True,
                            toolbar_control=False, search_control=not offline, **view)
        base.name = base_name  # leafmap renames layer 0
        if not bases:
            for stand_in in [la for la in m.layers if isinstance(la, ipyleaflet.TileLayer)]:
                m.remove(stand_in)
        for la in layers:
            if la is not base:
                m.add(la)
        if self.raster_view is not None:
            m.observe(self.raster_view.on_bounds, names="bounds")
        # only shapes that make an area: rectangles and polygons
        for tool in ("polyline", "circle", "circlemarker", "marker"):
            setattr(m.draw_control, tool, {})
        m.draw_control.on_draw(self._on_draw)
        self._popup = ipyleaflet.Popup(child=widgets.HTML(), max_width=420, max_height=320, auto_close=True)
        return m

    def _build_controls(self):
        """Query box (with the taxonomy's functions and classes), Run, Export, Split view."""
        widgets = require("ipywidgets", purpose=_PURPOSE)
        from ..osm.taxonomy import socio_classes, socio_functions

        options = list(dict.fromkeys([*socio_functions(), *socio_classes()]))
        self._query = widgets.Combobox(placeholder="query, e.g. park, school, Medical", options=options,
                                       ensure_option=False, layout=widgets.Layout(width="320px"))
        self._run_button = widgets.Button(description="Run", icon="play", button_style="primary",
                                          tooltip="Segment the query in the area")
        self._export_button = widgets.Button(description="Export", icon="download",
                                             tooltip=f"Write the results to {EXPORT_BASENAME}_<time>.gpkg")
        self._split_toggle = widgets.ToggleButton(description="Split view", icon="columns",
                                                  tooltip="Street map left, satellite right")
        self._run_button.on_click(lambda _: self._guarded(self.run, self._query.value))
        self._export_button.on_click(lambda _: self._guarded(self.export, None))
        self._split_toggle.observe(lambda change: self._guarded(self._set_split, change["new"]), names="value")
        return widgets.HBox([self._query, self._run_button, self._export_button, self._split_toggle])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # -- status ---------------------------------------------------------------------------------
    def _set_status(self, text: str, level: str = "info") -> None:
        """Show ``text`` in the status line; ``self.status`` keeps it as plain text."""
        self.status = text
        colour = _STATUS_COLOURS.get(level, _STATUS_COLOURS["info"])
        self._status.value = f'<span style="color: {colour}">{html.escape(text)}</span>'

    def _show_error(self, exc: BaseException) -> None:
        if isinstance(exc, SociogeoError):
            self._set_status(str(exc), "error")
        else:
            self._set_status(f"Unexpected error ({type(exc).__name__}: {exc}); the traceback is in the log.", "error")

    def _guarded(self, func, *args):
        """Call ``func`` for a button or the draw tool: errors end in the status line, not a traceback."""
        try:
            return func(*args)
        except Exception as exc:  # noqa: BLE001 (a widget callback has no caller to raise to)
            self._show_error(exc)
            if not isinstance(exc, SociogeoError):
                self._log.append_stderr("".join(traceback.format_exception(exc)))
            return None

    # -- the area -------------------------------------------------------------------------------
    @property
    def area(self):
        """The :class:`~sociogeo.Area` the next run uses, or None.

        Set it to an Area, a ``(west, south, east, north)`` bbox in degrees, GeoJSON or a shapely
        polygon (bboxes and shapes get ``imagery_zoom``); it is outlined on the map. Drawing on
        the map sets it too.
        """
        return self._area

    @area.setter
    def area(self, value) -> None:
        try:
            area = None if value is None else self._as_area(value)
        except Exception as exc:
            self._show_error(exc)
            raise
        self._drawn = None
        self._set_area(area, outline=True)
        if area is not None:
            self._fit_view(area)

    def _fit_view(self, area) -> None:
        """Centre the map on ``area`` at a zoom where it spans at most FIT_PX pixels.

        Computed here rather than with ``Map.fit_bounds``, which needs the browser's answer and
        an asyncio loop, so it also works from scripts and tests.
        """
        west, south, east, north = area.bounds
        grid = area.grid
        span = max(grid.width, grid.height)  # pixels at the area's own zoom
        zoom = area.zoom - max(0, math.ceil(math.log2(span / FIT_PX)))
        self.map.center = [(south + north) / 2, (west + east) / 2]
        self.map.zoom = max(1, min(zoom, 19))

    def _as_area(self, value):
        from ..geo.area import Area

        if isinstance(value, Area):  # an Area keeps its own zoom
            return value
        area = Area.coerce(value, self.imagery_zoom, max_area_km2=self.segment_kwargs.get("max_area_km2"))
        return self.imagery.choose_zoom(area)  # a raster's own zoom when imagery_zoom is not given

    def _set_area(self, area, *, outline: bool) -> None:
        self._area = area
        self._show_outline(area if outline else None)
        self._reset_run_view()
        if area is None:
            return
        from ..imagery.chips import DEFAULT_CHIP_SIZE, chip_windows

        grid = area.grid
        size = self.segment_kwargs.get("chip_size", DEFAULT_CHIP_SIZE)
        n = len(chip_windows(grid.width, grid.height, size, self.segment_kwargs.get("overlap", 0)))
        self._set_status(
            f"Area: {area.area_km2:.3g} km² at zoom {area.zoom} ({area.resolution_m:.2f} m/px), "
            f"{grid.width} x {grid.height} px, {n} chip(s) of {size} px. Type a query and press Run."
        )

    def _reset_run_view(self) -> None:
        """Forget the last run's progress, map image and stage-1 boxes: they belong to the old area.

        The result layers stay, since :attr:`results` keeps every run.
        """
        self._progress.value = 0
        self._progress.max = 1
        self._progress.bar_style = ""
        self._progress.description = ""
        if self._overlay is not None:
            self.map.remove(self._overlay)
            self._overlay = None
        self._draw_boxes()

    def _show_outline(self, area) -> None:
        """Outline a set area (drawn areas are already visible as drawings)."""
        if self._area_layer is not None:
            self.map.remove(self._area_layer)
            self._area_layer = None
        if area is None:
            return
        ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
        self._area_layer = ipyleaflet.GeoJSON(
            data={"type": "Feature", "properties": {}, "geometry": area.geometry.__geo_interface__},
            style={"color": "#ffffff", "weight": 2, "dashArray": "6 4", "fill": False}, name="Area",
        )
        self.map.add(self._area_layer)

    def _on_draw(self, _control, action=None, geo_json=None, **_):
        self._guarded(self._use_drawing, action, geo_json)

    def _use_drawing(self, action, feature) -> None:
        if action == "deleted":
            if self._drawn is not None and feature and feature.get("geometry") == self._drawn.get("geometry"):
                self._drawn = None
                self._set_area(None, outline=False)
                self._set_status("The area was deleted; draw a new one.")
            return
        if action not in ("created", "edited"):
            return
        from ..geo.area import Area

        geometry = (feature or {}).get("geometry") or {}
        kind = geometry.get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            self._set_area(None, outline=False)
            self._set_status(
                f"Draw a rectangle or polygon: a {kind or 'shape without geometry'} cannot be an area.", "error"
            )
            return
        try:
            area = Area.from_geojson(feature, self.imagery_zoom, max_area_km2=self.segment_kwargs.get("max_area_km2"))
            area = self.imagery.choose_zoom(area)
        except InvalidAreaError as exc:
            self._set_area(None, outline=False)
            self._set_status(f"Cannot use this drawing: {exc}", "error")
            return
        self._drawn = feature
        self._set_area(area, outline=False)

    # -- running --------------------------------------------------------------------------------
    @property
    def reasoner(self):
        """The :class:`~sociogeo.SocioReasoner` in use (None until the first run loads it)."""
        return self._reasoner

    def run(self, query: str):
        """Segment ``query`` in :attr:`area`, draw the polygons and return them as a GeoDataFrame.

        Fetches the imagery, loads the models on first use, runs :func:`sociogeo.segment` with
        progress in the widget, then adds the polygons to :attr:`results` (a rerun of the same
        query on the same area replaces that run's rows) and to the query's map layer.
        Errors are shown in the status line and raised.
        """
        error = None
        self._chips_run = 0
        area = self._area
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # tqdm bars of tiles and chips appear in the widget's log; errors are caught inside it,
            # because in a kernel an Output widget swallows exceptions that leave its context
            with self._log:
                try:
                    frame = self._run(query)
                except BaseException as exc:  # noqa: BLE001 (re-raised below)
                    error = exc
        self._run_button.disabled = False
        for w in caught:  # hand them on to the caller's filters, from where they were raised
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if error is not None:
            self._progress.bar_style = "danger"
            self._show_error(error)
            self._log_run(query, area, error=error)
            raise error
        self._progress.value = self._progress.max
        self._progress.bar_style = "success"
        self._report(query, frame, caught)
        self._log_run(query, area, frame=frame)
        return frame

    def _log_run(self, query, area, *, frame=None, error=None) -> None:
        """A few lines in the widget's log saying what ran: query, area, chips, result, files written."""
        lines = [f"[{_dt.datetime.now():%H:%M:%S}] run {query!r}"]
        if area is not None:
            west, south, east, north = area.bounds
            lines.append(f"  area: {west:.5f}, {south:.5f}, {east:.5f}, {north:.5f} (W, S, E, N degrees), "
                         f"{area.area_km2:.3g} km² at zoom {area.zoom}, {area.grid.width} x {area.grid.height} px")
        lines.append(f"  chips: {self._chips_run} of {self._progress.max}")
        if error is not None:
            lines.append(f"  failed: {type(error).__name__}: {error}")
        else:
            lines.append(f"  result: {len(frame)} polygon(s), {frame['area_m2'].sum():,.0f} m²")
            written = _written_files(self.segment_kwargs)
            files = ", ".join(written) if written else "none (explorer.export() writes them)"
            lines.append(f"  files written: {files}")
        self._write_log(lines)

    def _write_log(self, lines: list[str]) -> None:
        # plain text (a stream output), never HTML: queries and model text need no escaping there
        self._log.append_stdout("\n".join(lines) + "\n")

    def _run(self, query):
        from ..imagery.pair import fetch_pair
        from ..pipeline.run import segment

        if not isinstance(query, str) or not query.strip():
            raise ConfigError("type a query first, e.g. 'park' or 'school'")
        query = query.strip()
        area = self._area
        if area is None:
            raise InvalidAreaError(
                "no area yet: draw a rectangle or polygon on the map, or set explorer.area = (west, south, east, north)"
            )
        self._run_button.disabled = True
        self._progress.bar_style = "info"
        self._progress.value = 0
        self._phase(f"Fetching imagery for {query!r}...", "imagery")
        pair = fetch_pair(area, imagery=self.imagery)
        self._show_map_image(pair)
        reasoner = self._ensure_reasoner()
        self._progress.max = self._chip_count(pair.grid)
        self._phase(f"Segmenting {query!r}...", "chips")
        boxes: list[dict] = []

        def on_chip(chip, q, prediction):
            self._chips_run += 1
            self._advance(1)
            boxes.extend(_box_features(chip, q, prediction))

        frame = segment(pair, query, reasoner=reasoner, imagery=self.imagery, callback=on_chip, **self.segment_kwargs)
        self._store(query, area, frame)
        self._stage1_boxes[(query, _area_key(area))] = boxes
        self._draw_query(query)
        self._draw_boxes()
        return frame

    def _phase(self, text: str, label: str) -> None:
        self._progress.description = label
        self._set_status(text, "busy")

    def _advance(self, n: int) -> None:
        self._progress.value = min(self._progress.value + n, self._progress.max)
        self._progress.description = f"{self._progress.value}/{self._progress.max}"

    def _chip_count(self, grid) -> int:
        """Chips segment() will run at most (it skips chips without valid pixels)."""
        from ..imagery.chips import DEFAULT_CHIP_SIZE, chip_windows

        size = self.segment_kwargs.get("chip_size", DEFAULT_CHIP_SIZE)
        return max(1, len(chip_windows(grid.width, grid.height, size, self.segment_kwargs.get("overlap", 0))))

    def _ensure_reasoner(self):
        if self._reasoner is None:
            from ..reasoner.model import SocioReasoner

            self._phase("Loading the models (once per explorer)...", "models")
            self._reasoner = SocioReasoner.from_pretrained(
                defaults.VLM if self._vlm is None else self._vlm,
                defaults.SAM if self._sam is None else self._sam,
                device=self._device, offline=self.imagery.offline,
            )
        return self._reasoner

    def _report(self, query, frame, caught) -> None:
        if len(frame):
            text = (
                f"Found {len(frame)} {query!r} polygon(s), {frame['area_m2'].sum():,.0f} m² in all. "
                "Click one to read why."
            )
        else:
            text = f"No {query!r} found in this area."
        level = "success"
        text += _label_text(frame.attrs)
        if frame.attrs.get("warning"):
            text += f" {frame.attrs['warning']}."
            level = "warning"
        noteworthy = [w for w in caught if not issubclass(w.category, _QUIET_WARNINGS)]
        if noteworthy:
            text += f" {len(noteworthy)} warning(s), e.g.: {noteworthy[0].message}"
            level = "warning"
        self._set_status(text, level)

    # -- results --------------------------------------------------------------------------------
    @property
    def results(self):
        """Every run's polygons in one GeoDataFrame (EPSG:4326; columns as :func:`sociogeo.segment`).

        ``.attrs`` keeps what all runs share (models, zoom, providers, ...) and ``queries``.
        """
        if self._results is None:
            from ..pipeline.run import empty_result

            return empty_result()
        return self._results.copy()

    def results_for(self, query: str):
        """The rows of :attr:`results` for ``query``."""
        frame = self.results
        return frame[frame["query"] == query].reset_index(drop=True)

    def _store(self, query, area, frame) -> None:
        import geopandas as gpd
        import pandas as pd

        self._runs.pop((query, _area_key(area)), None)  # re-insert: the latest run goes last
        self._runs[(query, _area_key(area))] = frame
        frames = list(self._runs.values())
        combined = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326")
        combined.attrs = _shared_attrs([f.attrs for f in frames])
        combined.attrs["queries"] = list(dict.fromkeys(q for q, _ in self._runs))
        self._results = combined

    def _draw_query(self, query: str) -> None:
        """(Re)draw the query's layer from all its rows, in the query's colour."""
        ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
        colour = self._colours.setdefault(query, QUERY_COLOURS[len(self._colours) % len(QUERY_COLOURS)])
        rows = self.results_for(query)
        data = json.loads(rows.to_json(drop_id=True))
        warning = self._results.attrs.get("warning") if self._results is not None else None
        for feature in data["features"]:
            if warning:
                feature["properties"]["warning"] = warning
        from ..pipeline.results import result_labels

        labels = result_labels(self._results.attrs, short=True) if self._results is not None else []
        name = _html(" \u2014 ".join([f"{query} ({len(rows)})", *labels]))  # the layers control shows HTML
        layer = self._result_layers.get(query)
        if layer is None:
            layer = ipyleaflet.GeoJSON(
                data=data, name=name,
                style={"color": colour, "weight": 2, "fillColor": colour, "fillOpacity": 0.35},
                hover_style={"weight": 3, "fillOpacity": 0.6},
            )
            layer.on_click(self._on_feature_click)
            self.map.add(layer)
            self._result_layers[query] = layer
        else:
            layer.data = data
            layer.name = name

    def _draw_boxes(self) -> None:
        """One layer ("Stage-1 boxes") with the stage-1 boxes of every run in the current area, as
        dashed outlines (empty after a new area is set, until its first run).
        """
        ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
        key = None if self._area is None else _area_key(self._area)
        features = [f for (_, area_key), fs in self._stage1_boxes.items() if area_key == key for f in fs]
        data = {"type": "FeatureCollection", "features": features}
        if self._boxes_layer is None:
            if not features:
                return  # no layer until there is something to show
            self._boxes_layer = ipyleaflet.GeoJSON(
                data=data, name="Stage-1 boxes",
                style={"color": "#1f3fbf", "weight": 1.5, "dashArray": "4 3", "fill": False},
            )
            self.map.add(self._boxes_layer)
        else:
            self._boxes_layer.data = data

    def _on_feature_click(self, event=None, feature=None, properties=None, coordinates=None, **_):
        self._guarded(self._open_popup, properties or (feature or {}).get("properties") or {}, coordinates, feature)

    def _open_popup(self, properties: dict, coordinates, feature) -> None:
        if coordinates is None and feature:  # no click position: the feature's centre
            from shapely.geometry import shape

            point = shape(feature["geometry"]).representative_point()
            coordinates = [point.y, point.x]
        self._popup.child.value = popup_html(properties)
        self._popup.location = list(coordinates)
        if self._popup not in self.map.layers:
            self.map.add(self._popup)
        self._popup.open_popup(list(coordinates))

    def _show_map_image(self, pair) -> None:
        """The map image the model sees, as a small PNG overlay (layer "Map image (model input)")."""
        import numpy as np

        ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
        image = np.moveaxis(np.asarray(pair.map.values), 0, -1)
        valid = pair.masks.get("map") if getattr(pair, "masks", None) else None
        url = png_data_url(image, valid=valid, max_px=OVERLAY_MAX_PX)
        west, south, east, north = pair.grid.lonlat_bounds
        bounds = [[south, west], [north, east]]
        if self._overlay is None:
            self._overlay = ipyleaflet.ImageOverlay(url=url, bounds=bounds, opacity=0.75,
                                                    name="Map image (model input)")
            # below the result layers, so polygons stay clickable
            below = [self.map.layers.index(layer) for layer in self._result_layers.values()]
            self.map.add(self._overlay, index=min(below) if below else None)
        else:
            self._overlay.url = url
            self._overlay.bounds = bounds

    # -- split view -----------------------------------------------------------------------------
    def _set_split(self, on: bool) -> None:
        """Street map left, satellite right, with a draggable divider."""
        if on and self._split is None and self.raster_view is not None:
            self._split_toggle.value = False
            raise ConfigError("the split view needs tile layers; with your own raster, switch the 'Satellite' "
                              "overlay on and off in the layer control instead")
        if on and self._split is None and (self._map_layer is None or self._sat_layer is None):
            self._split_toggle.value = False
            raise ConfigError(f"offline, the split view needs both tile layers from this machine, but "
                              f"{', '.join(self.hidden_layers)} would be fetched from the internet; pass "
                              "satellite= and map= local tile servers' URL templates, or go online")
        if on and self._split is None:
            ipyleaflet = require("ipyleaflet", purpose=_PURPOSE)
            self._split = ipyleaflet.SplitMapControl(left_layer=self._map_layer, right_layer=self._sat_layer)
            self.map.add(self._split)
        elif not on and self._split is not None:
            self.map.remove(self._split)
            self._split = None
        if self._split_toggle.value != on:
            self._split_toggle.value = on

    @property
    def split_view(self) -> bool:
        """Whether the split view (street map | satellite) is on; settable."""
        return self._split is not None

    @split_view.setter
    def split_view(self, on: bool) -> None:
        self._set_split(bool(on))

    # -- export ---------------------------------------------------------------------------------
    def export(self, path=None) -> Path:
        """Write :attr:`results` to ``path``: GeoPackage (.gpkg), GeoJSON (.geojson, .json) or
        GeoParquet (.parquet), chosen by extension; returns the path. Without ``path``, a
        timestamped ``sociogeo_results_<time>.gpkg`` in the working directory (the Export button).
        """
        try:
            if path is None:
                stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                path = Path.cwd() / f"{EXPORT_BASENAME}_{stamp}.gpkg"
            from ..pipeline.results import write_result

            written = write_result(self.results, path)
        except Exception as exc:
            self._show_error(exc)
            raise
        path = written["result"]
        self._set_status(f"Exported {len(self.results)} polygon(s) to {path}.{_label_text(self.results.attrs)}",
                         "success")
        self._write_log([f"[{_dt.datetime.now():%H:%M:%S}] export: {len(self.results)} polygon(s)",
                         f"  files written: {path}, {written['metadata']}"])
        return path

    def __repr__(self) -> str:
        queries = list(dict.fromkeys(q for q, _ in self._runs))
        return f"Explorer(area={self._area!r}, queries={queries}, reasoner={self._reasoner!r})"


def _box_features(chip, query: str, prediction) -> list[dict]:
    """The prediction's stage-1 boxes as lon/lat GeoJSON rectangles, clipped to the area (an edge
    chip's padding lies outside it).
    """
    import numpy as np

    height, width = chip.size[0] - chip.pad[0], chip.size[1] - chip.pad[1]
    features = []
    for x1, y1, x2, y2 in prediction.stage1_boxes:
        (px1, py1), (px2, py2) = np.clip(chip.model_to_pixel([[x1, y1], [x2, y2]]), 0, [width, height])
        if px2 <= px1 or py2 <= py1:
            continue  # entirely in the padding
        (west, north), (east, south) = chip.pixel_to_lonlat([[px1, py1], [px2, py2]]).tolist()
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        features.append({
            "type": "Feature",
            "properties": {"query": query, "chip_id": chip.chip_id},
            "geometry": {"type": "Polygon", "coordinates": [ring]},
        })
    return features


# -- helpers ----------------------------------------------------------------------------------------
def popup_html(properties: dict, *, max_chars: int = POPUP_MAX_CHARS) -> str:
    """The popup of one result polygon: query, area (m²), chips and the model's reasoning,
    HTML-escaped and cut to ``max_chars`` characters.
    """
    reasoning = _truncate(str(properties.get("reasoning") or ""), max_chars)
    area = properties.get("area_m2")
    lines = [f"<b>{html.escape(str(properties.get('query', '')))}</b>"]
    if isinstance(area, (int, float)):
        lines.append(f"Area: {area:,.0f} m²")
    if properties.get("chip_id"):
        lines.append(f"Chip(s): {html.escape(str(properties['chip_id']))}")
    body = "<br>".join(lines)
    body += (
        '<div style="white-space: pre-wrap; margin-top: 4px">'
        f"{html.escape(reasoning) if reasoning else '<i>no reasoning text</i>'}</div>"
    )
    if properties.get("warning"):
        body += f'<div style="color: #b00020; margin-top: 4px">{html.escape(str(properties["warning"]))}</div>'
    return body


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + " … (truncated; the full text is in explorer.results)"


def _basemap_specs(basemaps) -> dict:
    if basemaps is None:
        return {}
    if isinstance(basemaps, dict):
        return {str(k): v for k, v in basemaps.items()}
    if isinstance(basemaps, str) or not hasattr(basemaps, "__iter__"):
        basemaps = [basemaps]
    return {str(getattr(spec, "name", spec)): spec for spec in basemaps}


def _check_segment_kwargs(kwargs: dict) -> None:
    from ..imagery.source import FIELDS
    from ..pipeline.run import MODEL_FIELDS, segment

    allowed = set(inspect.signature(segment).parameters) - _MANAGED
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        own = _MANAGED | set(FIELDS) | set(MODEL_FIELDS)
        hint = " (the Explorer's own arguments set these)" if set(unknown) & own else ""
        raise ConfigError(
            f"Explorer got unknown option(s) {', '.join(unknown)}{hint}; options passed on to "
            f"sociogeo.segment are: {', '.join(sorted(allowed))}"
        )


def _html(text) -> str:
    """``text`` safe inside HTML (layer names, which Leaflet's layers control shows as HTML)."""
    return html.escape(str(text))


def _label_text(attrs: dict) -> str:
    """What the status line adds about a result's models and imagery (demo model, synthetic
    satellite layer), with a leading space; empty for real models on imagery.
    """
    text = ""
    if attrs.get("model_kind") == "demo":
        text += f" ({attrs.get('model_notice') or 'demo model'}.)"
    if attrs.get("synthetic_satellite"):
        text += " The satellite layer is a synthetic stand-in, not imagery."
    return text


def _written_files(segment_kwargs: dict) -> list[str]:
    """The files sociogeo.segment writes with these options: ``out`` and its sidecar, ``mask_out``."""
    from ..pipeline.results import sidecar_path

    files = []
    if segment_kwargs.get("out") is not None:
        files += [str(segment_kwargs["out"]), str(sidecar_path(Path(segment_kwargs["out"])))]
    if segment_kwargs.get("mask_out") is not None:
        files.append(str(segment_kwargs["mask_out"]))
    return files


def _area_key(area) -> tuple:
    return (area.geometry.wkb, area.zoom)


def _shared_attrs(attrs_list: list[dict]) -> dict:
    """The attrs every run agrees on."""
    first, *rest = attrs_list
    return {k: v for k, v in first.items() if all(k in a and a[k] == v for a in rest)}


def _satellite_name(provider) -> str:
    """The satellite layer's name in the layers control (plain text), saying when it is synthetic."""
    name = f"Satellite ({provider.name})"
    return f"{name} \u2014 synthetic stand-in" if getattr(provider, "synthetic", False) else name
