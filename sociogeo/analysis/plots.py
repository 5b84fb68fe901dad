"""Pictures of results: one chip's reasoning side by side, and result polygons over an image.

Every function draws on a :class:`matplotlib.figure.Figure` created without pyplot (or on an
``ax`` you pass) and returns the Figure; nothing is shown, so this works the same in scripts,
notebooks and on headless servers.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..imagery.arrays import as_rgb
from ..pipeline.results import picture_labels, result_labels

MASK_RGBA = (1.0, 0.0, 0.0, 0.4)  # the red overlay of the stage-2 rendering (render.MASK_RGBA)
BOX_COLOUR = "#1f3fff"
POINT_COLOUR = "#ffe000"
MAX_THINK_CHARS = 1500
RESULT_PREVIEW_MAX_SIZE = 2048  # pixels along a result preview's longer side; bigger areas are downsampled


# -- one chip's reasoning ----------------------------------------------------------------------
def plot_prediction(
    pred,
    map_image: np.ndarray,
    satellite_image: np.ndarray,
    *,
    figsize=None,
    title: str | None = None,
    trained: bool = True,
    model_kind: str | None = None,
    synthetic: bool = False,
):
    """One chip's reasoning in one figure.

    Top row: the map, the satellite image, stage 1 (its boxes and its SAM mask over the
    satellite image) and stage 2 (its boxes, its points as markers and the final mask). Bottom
    row: each stage's think text, wrapped. Everything is drawn in the model's pixel space
    (``pred.model_size``, e.g. 756 x 756 for a 768-pixel chip), where the boxes and points
    live: the H x W x 3 uint8 images are resized to it.

    ``title`` replaces the default title (the query). ``trained=False`` (or ``model_kind``
    "untrained") marks the figure as coming from untrained models, ``model_kind="demo"`` as the
    demo model's, ``synthetic=True`` says the satellite image is a synthetic stand-in (pass
    ``reasoner.model_kind`` and ``result.attrs["synthetic_satellite"]``); an empty result is
    marked too. Returns the Figure (6 axes).
    """
    from matplotlib.figure import Figure

    from ..geo.modelspace import resize_image

    size = tuple(int(v) for v in pred.model_size)
    map_model = resize_image(as_rgb(map_image, "map"), size)
    sat_model = resize_image(as_rgb(satellite_image, "satellite"), size)
    stage1_mask = _mask(pred.stage1_mask, size)
    final_mask = _mask(pred.mask, size)
    boxes2 = [item.box for item in pred.stage2_items if item.box is not None]
    points2 = [p for item in pred.stage2_items for p in item.points]

    fig = Figure(figsize=figsize or (16, 6.5), layout="constrained")
    grid = fig.add_gridspec(2, 4, height_ratios=[3.0, 1.3])
    panels = [fig.add_subplot(grid[0, i]) for i in range(4)]
    _show(panels[0], map_model, "map")
    _show(panels[1], sat_model, "satellite")
    _show(panels[2], sat_model, f"stage 1: {len(pred.stage1_boxes)} box(es)")
    _overlay(panels[2], stage1_mask)
    _boxes(panels[2], pred.stage1_boxes)
    _show(panels[3], sat_model, f"stage 2: {len(boxes2)} box(es), {len(points2)} point(s)")
    _overlay(panels[3], final_mask)
    _boxes(panels[3], boxes2)
    if points2:
        xy = np.asarray(points2, dtype=float)
        panels[3].plot(xy[:, 0], xy[:, 1], linestyle="none", marker="o", markersize=6,
                       markerfacecolor=POINT_COLOUR, markeredgecolor="black", markeredgewidth=0.8)

    for col, (label, think, raw) in enumerate((("stage 1 reasoning", pred.stage1_think, pred.stage1_text),
                                               ("stage 2 reasoning", pred.stage2_think, pred.stage2_text))):
        # without a <think> text, show what the model wrote instead: that is what went wrong
        label, text = (
            (label, think) if think.strip() else (label.replace("reasoning", "raw output (no <think> text)"), raw)
        )
        ax = fig.add_subplot(grid[1, 2 * col:2 * col + 2])
        ax.set_axis_off()
        # model text is drawn as written: "$...$" in it is not mathtext (which can fail to parse)
        ax.text(0.0, 1.0, f"{label}:\n{_wrap(text)}", va="top", ha="left", fontsize=8,
                family="sans-serif", transform=ax.transAxes, wrap=False, parse_math=False)

    heading = title if title is not None else f"\u201c{pred.query}\u201d"
    if pred.empty:
        heading = f"{heading} \u2014 nothing found"
    labels = picture_labels("untrained" if not trained else model_kind, synthetic)
    fig.suptitle("\n".join([*labels, heading]), parse_math=False)
    return fig


def _mask(mask, size) -> np.ndarray:
    from ..geo.modelspace import resize_image

    arr = np.asarray(mask).astype(bool)
    if arr.ndim != 2:
        raise ConfigError(f"masks must be H x W, got shape {arr.shape}")
    return resize_image(arr, size)


def _show(ax, image, title: str) -> None:
    h, w = image.shape[:2]
    # continuous pixel coordinates: the image spans [0, w] x [0, h], as boxes and points do
    ax.imshow(image, extent=(0, w, h, 0), interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def _overlay(ax, mask: np.ndarray) -> None:
    h, w = mask.shape
    rgba = np.zeros((h, w, 4), dtype=float)
    rgba[mask] = MASK_RGBA
    ax.imshow(rgba, extent=(0, w, h, 0), interpolation="nearest")


def _boxes(ax, boxes) -> None:
    from matplotlib.patches import Rectangle

    for x1, y1, x2, y2 in boxes:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=BOX_COLOUR, linewidth=1.5))


def _wrap(text: str, width: int = 110) -> str:
    text = " ".join((text or "").split())
    if not text:
        return "(empty)"
    if len(text) > MAX_THINK_CHARS:
        text = text[:MAX_THINK_CHARS].rstrip() + " \u2026"
    return textwrap.fill(text, width=width)


# -- polygons over an image --------------------------------------------------------------------
def plot_polygons(image, gdf, *, transform, crs, ax=None, title: str | None = None, column: str = "query",
                  linewidth: float = 1.5):
    """Outline the polygons of ``gdf`` over an H x W x 3 uint8 ``image``.

    ``transform`` (an ``affine.Affine``) maps the image's pixel (col, row) to coordinates in
    ``crs`` (e.g. ``grid.transform`` and ``"EPSG:3857"`` of a fetched pair). The polygons, in
    any CRS, are reprojected to ``crs`` and then to pixels. One colour per value of ``column``
    (e.g. per query), with a legend. Draws on ``ax`` or a new Figure; returns the Figure.
    """
    import matplotlib
    import shapely
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    arr = as_rgb(image, "background")
    if getattr(gdf, "crs", None) is None:
        raise ConfigError("the GeoDataFrame has no CRS; set one first, e.g. gdf.set_crs('EPSG:4326')")
    if crs is None:
        raise ConfigError("crs is required: the CRS of the image's transform, e.g. 'EPSG:3857'")
    h, w = arr.shape[:2]
    if ax is None:
        fig = Figure(figsize=(8, 8 * h / w))
        ax = fig.add_subplot()
    fig = ax.figure
    ax.imshow(arr, extent=(0, w, h, 0), interpolation="nearest")

    inverse = ~transform
    frame = gdf.to_crs(crs)
    geoms = frame.geometry.to_numpy()
    pixels = shapely.transform(
        geoms, lambda xy: np.column_stack([
            inverse.a * xy[:, 0] + inverse.b * xy[:, 1] + inverse.c,
            inverse.d * xy[:, 0] + inverse.e * xy[:, 1] + inverse.f,
        ]),
    )
    labels = frame[column].astype(str).to_numpy() if column in frame.columns else np.full(len(frame), "polygons")
    palette = matplotlib.colormaps["tab10"]
    for k, label in enumerate(dict.fromkeys(labels)):
        rings = _rings(pixels[labels == label])
        if rings:
            # a label is the query as written: "\$" keeps matplotlib from reading "$...$" as mathtext
            ax.add_collection(LineCollection(rings, colors=[palette(k % 10)], linewidths=linewidth,
                                             label=label.replace("$", r"\$")))
    if ax.collections:
        ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, parse_math=False)  # titles carry queries: drawn as written
    return fig


def _rings(geoms) -> list[np.ndarray]:
    """Every exterior and interior ring of (multi)polygons, as N x 2 arrays."""
    import shapely

    rings = []
    for geom in geoms:
        if geom is None or geom.is_empty:
            continue
        for part in shapely.get_parts(geom):
            if part.geom_type == "Polygon":
                rings.append(np.asarray(part.exterior.coords)[:, :2])
                rings.extend(np.asarray(r.coords)[:, :2] for r in part.interiors)
            elif part.geom_type in ("LineString", "LinearRing"):
                rings.append(np.asarray(part.coords)[:, :2])
    return rings


def save_preview(path, image, gdf, *, transform, crs, title: str | None = None, dpi: int = 100) -> Path:
    """Write a PNG of ``image`` (H x W x 3 uint8) with ``gdf``'s polygons outlined; returns its path.

    The PNG is exactly W x H pixels and pixel (col, row) of the PNG is pixel (col, row) of the
    image, so outlines sit where the polygons are. ``title`` is written in the top-left corner.
    """
    from matplotlib.figure import Figure

    arr = as_rgb(image, "background")
    h, w = arr.shape[:2]
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    plot_polygons(arr, gdf, transform=transform, crs=crs, ax=ax, linewidth=2.0 * 72.0 / dpi)
    if title:
        ax.text(4, 4, title, va="top", ha="left", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 2})
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path



# -- result previews ---------------------------------------------------------------------------
def write_result_preview(path, imagery, gdf, *, grid=None, title: str | None = None,
                         max_size: int = RESULT_PREVIEW_MAX_SIZE) -> Path:
    """A PNG of the satellite image with ``gdf``'s polygons outlined, at most ``max_size`` pixels
    along its longer side; returns its path.

    ``imagery`` is an :class:`~sociogeo.imagery.ImagePair`, or an
    :class:`~sociogeo.imagery.ImagerySource` with the area's ``grid``: then the image is read
    block by block through the tile cache and downsampled as it comes, so a city's preview needs
    no city-sized array. ``title`` defaults to the queries and entity counts; it always starts with
    the result's labels (untrained or demo models, a synthetic satellite layer: see
    :func:`~sociogeo.pipeline.results.result_labels`).
    """
    from affine import Affine

    from ..imagery.windows import open_windows, overview

    grid = imagery.grid if grid is None else grid
    with open_windows(imagery, grid) as reader:
        image, _ = overview(reader, grid, max_size)
    # the downsampled image still spans the grid: scale the pixel size, keep the origin
    transform = grid.transform @ Affine.scale(grid.width / image.shape[1], grid.height / image.shape[0])
    if title is None:
        counts = gdf["query"].value_counts() if len(gdf) else {}
        queries = gdf.attrs.get("queries") or list(counts.keys())
        title = ", ".join(f"{q}: {int(counts.get(q, 0))}" for q in queries)
    title = "\n".join([*result_labels(gdf.attrs), title])
    return save_preview(path, image, gdf, transform=transform, crs=grid.crs, title=title)


__all__ = ["plot_polygons", "plot_prediction", "save_preview", "write_result_preview"]
