"""Figures of a chip's reasoning and of result polygons over an image, checked by their content:
axes, patches and markers where the coordinates say, and PNG pixels on the outline."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from shapely.geometry import box

from sociogeo.analysis.plots import plot_polygons, plot_prediction, save_preview
from sociogeo.errors import ConfigError
from sociogeo.geo.grid import PixelGrid
from sociogeo.reasoner import Prediction
from sociogeo.reasoner.parsing import Item

CHIP = 768
MODEL = 756  # smart_resize(768, 768)


def _prediction(empty: bool = False) -> Prediction:
    mask1 = np.zeros((MODEL, MODEL), bool)
    mask1[100:300, 50:250] = True
    final = np.zeros((CHIP, CHIP), bool)
    if not empty:
        final[400:600, 384:700] = True
    return Prediction(
        query="school",
        stage1_text="<answer>...</answer>",
        stage1_boxes=[(40.0, 90.0, 260.0, 310.0), (380.0, 390.0, 690.0, 590.0)],
        stage1_mask=mask1,
        stage2_text="<answer>...</answer>",
        stage2_items=[Item(box=(380.0, 390.0, 690.0, 590.0), points=((500.0, 480.0), (600.0, 520.0))),
                      Item(box=(40.0, 90.0, 260.0, 310.0), points=((150.0, 200.0),))],
        mask=final,
        stage1_think="The school is the large building with a courtyard " * 12,
        stage2_think="Refining: the sports field belongs to the school as well.",
        model_size=(MODEL, MODEL),
        image_size=(CHIP, CHIP),
    )


def _chip_images():
    sat = np.zeros((CHIP, CHIP, 3), np.uint8)
    sat[:, CHIP // 2:] = 255  # right half white
    return np.full((CHIP, CHIP, 3), 200, np.uint8), sat


def test_plot_prediction_panels_in_model_space():
    pred = _prediction()
    map_image, sat = _chip_images()
    fig = plot_prediction(pred, map_image, sat)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    map_ax, sat_ax, s1, s2, t1, t2 = fig.axes
    for ax in (map_ax, sat_ax, s1, s2):
        assert ax.images[0].get_array().shape[:2] == (MODEL, MODEL)
        assert ax.get_xlim() == (0, MODEL)
    # the white half starts at model column 378 (= 384 * 756 / 768)
    shown = np.asarray(sat_ax.images[0].get_array())
    assert (shown[:, 380] == 255).all() and (shown[:, 375] == 0).all()

    # stage 1: its boxes as rectangles and its mask as the overlay, both in model pixels
    rects = [(p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height()) for p in s1.patches]
    assert rects == pred.stage1_boxes
    overlay1 = np.asarray(s1.images[1].get_array())
    assert ((overlay1[..., 3] > 0) == pred.stage1_mask).all()

    # stage 2: the items' boxes, their points as markers, the final mask resized to model space
    assert len(s2.patches) == 2 and len(s2.lines) == 1
    xs, ys = s2.lines[0].get_data()
    assert list(zip(xs, ys)) == [(500.0, 480.0), (600.0, 520.0), (150.0, 200.0)]
    overlay2 = np.asarray(s2.images[1].get_array())[..., 3] > 0
    assert overlay2.shape == (MODEL, MODEL)
    assert overlay2[394:590, 378:689].all() and not overlay2[:390].any() and not overlay2[:, :375].any()

    # the think texts, wrapped, under the panels
    text1 = t1.texts[0].get_text()
    assert text1.startswith("stage 1 reasoning:") and "courtyard" in text1
    assert max(len(line) for line in text1.splitlines()) <= 110
    assert "sports field" in t2.texts[0].get_text()
    assert "school" in fig._suptitle.get_text()
    fig.canvas.draw()  # renders without pyplot


def test_plot_prediction_marks_untrained_and_empty():
    pred = _prediction(empty=True)
    map_image, sat = _chip_images()
    title = plot_prediction(pred, map_image, sat, trained=False, title="chip 3")._suptitle.get_text()
    assert "UNTRAINED" in title and "chip 3" in title and "nothing found" in title
    assert "UNTRAINED" not in plot_prediction(_prediction(), map_image, sat)._suptitle.get_text()
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        plot_prediction(pred, map_image.astype(float), sat)


def test_plot_prediction_shows_raw_output_without_think_text():
    import dataclasses

    pred = dataclasses.replace(_prediction(), stage1_think="", stage1_text="gibberish q7 ]]} no tags")
    map_image, sat = _chip_images()
    texts = [t.get_text() for ax in plot_prediction(pred, map_image, sat).axes for t in ax.texts]
    assert any("raw output" in t and "gibberish q7" in t for t in texts)
    assert any("stage 2 reasoning" in t and "sports field" in t for t in texts)


@pytest.fixture
def scene():
    """A 200 x 300 grey image on a zoom-18 Web-Mercator grid in Helsinki, and two polygons given
    in lon/lat whose corners fall on known pixels."""
    import geopandas as gpd

    grid = PixelGrid.from_lonlat_bounds(24.940, 60.168, 24.9405, 60.1682, zoom=18)
    grid = grid.window(0, 0, 300, 200)
    image = np.full((200, 300, 3), 128, np.uint8)

    def pixel_box(c0, r0, c1, r1):
        (x0, x1), (y0, y1) = grid.xy([c0, c1], [r1, r0])
        return box(x0, y0, x1, y1)

    gdf = gpd.GeoDataFrame(
        {"query": ["school", "park"]},
        geometry=[pixel_box(50, 40, 150, 120), pixel_box(200, 150, 260, 190)], crs="EPSG:3857",
    ).to_crs("EPSG:4326")
    return image, gdf, grid


def test_plot_polygons_in_pixel_space(scene):
    image, gdf, grid = scene
    fig = plot_polygons(image, gdf, transform=grid.transform, crs="EPSG:3857", title="preview")
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["school", "park"]
    ring = ax.collections[0].get_segments()[0]
    corners = {(round(x, 6), round(y, 6)) for x, y in ring}
    assert corners == {(50, 40), (150, 40), (150, 120), (50, 120)}
    assert ax.get_title() == "preview"
    with pytest.raises(ConfigError, match="no CRS"):
        plot_polygons(image, gdf.set_crs(None, allow_override=True), transform=grid.transform, crs="EPSG:3857")


def test_save_preview_draws_the_outline_where_the_polygon_is(scene, tmp_path):
    from PIL import Image

    image, gdf, grid = scene
    path = save_preview(tmp_path / "out" / "preview.png", image, gdf, transform=grid.transform,
                        crs="EPSG:3857", title="school")
    png = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert png.shape == (200, 300, 3)

    def coloured(row, col):
        return np.abs(png[row, col] - 128).max() > 40

    # on the school's outline: its left, bottom and top edges; the park's bottom-left corner edge
    assert coloured(80, 50) or coloured(80, 49)
    assert coloured(120, 100) or coloured(119, 100)
    assert coloured(40, 100) or coloured(39, 100)
    assert coloured(170, 200) or coloured(170, 199)
    # inside the polygon and far from everything: the image untouched
    for row, col in [(80, 100), (180, 20), (100, 280)]:
        assert (png[row, col] == 128).all()


def test_model_text_with_tex_markup_surrogates_and_nul_draws_as_written(tmp_path):
    """Model text is drawn literally: "$...$" is not mathtext (an unknown command would make saving fail)."""
    import dataclasses

    nasty = r"costs $5 and $\notacommand{x}$ or $\frac{1$ \ud800 NUL\x00 end"
    pred = dataclasses.replace(_prediction(), stage1_think=nasty, stage2_think="", stage2_text=nasty,
                               query=r"$\undefined$ park")
    map_image, sat = _chip_images()
    fig = plot_prediction(pred, map_image, sat)
    fig.savefig(tmp_path / "chip.png")  # draws every text
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(r"$\notacommand{x}$" in t for t in texts)
    assert r"$\undefined$" in fig._suptitle.get_text()


def test_queries_with_dollar_signs_are_legend_and_title_text_not_mathtext(scene, tmp_path):
    image, gdf, grid = scene
    gdf = gdf.assign(query=[r"$\nosuch$ school", "park"])
    fig = plot_polygons(image, gdf, transform=grid.transform, crs="EPSG:3857", title=r"$\nosuch$ preview")
    fig.savefig(tmp_path / "p.png")  # draws the legend and the title (mathtext would raise here)
    (ax,) = fig.axes
    assert ax.get_title() == r"$\nosuch$ preview" and not ax.title.get_parse_math()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert r"\$\nosuch\$ school" in legend  # escaped dollars: drawn as written, not as math
    assert (tmp_path / "p.png").stat().st_size > 0


def test_plot_prediction_labels_demo_models_and_synthetic_imagery():
    map_image, sat = _chip_images()
    title = plot_prediction(_prediction(), map_image, sat, model_kind="demo", synthetic=True,
                            title="chip 3")._suptitle.get_text()
    assert "DEMO MODEL TRAINED ON A SYNTHETIC STAND-IN OF THE SAMPLE AREA" in title
    assert "SYNTHETIC stand-in satellite layer" in title and title.endswith("chip 3")
    plain = plot_prediction(_prediction(), map_image, sat, model_kind="released")._suptitle.get_text()
    assert "DEMO" not in plain and "SYNTHETIC" not in plain and "UNTRAINED" not in plain
