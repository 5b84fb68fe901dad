"""`import sociogeo` must stay light: no torch, geopandas, leafmap, transformers until used."""

import subprocess
import sys

HEAVY = [
    "torch", "transformers", "geopandas", "leafmap", "ipyleaflet", "rasterio", "osmnx", "xarray", "matplotlib", "PIL",
    "ray",
]


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_loads_nothing_heavy():
    loaded = _loaded_after("import sociogeo")
    assert not [m for m in HEAVY if m in loaded], [m for m in HEAVY if m in loaded]


def test_public_names_resolve_lazily():
    loaded = _loaded_after("import sociogeo\nsociogeo.Area\nsociogeo.PixelGrid\nsociogeo.options.progress")
    # Area validation pulls in shapely/pyproj when used, but never torch or leafmap
    assert "torch" not in loaded and "leafmap" not in loaded


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    import sociogeo

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sociogeo.nope


def test_dependency_error_names_the_extra():
    import pytest

    from sociogeo._optional import require
    from sociogeo.errors import DependencyNotFoundError

    with pytest.raises(DependencyNotFoundError, match=r"pip install 'sociogeo\[all\]'"):
        require("a_module_that_does_not_exist_xyz")
