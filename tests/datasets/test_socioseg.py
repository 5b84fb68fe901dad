import json
import subprocess
import sys

import numpy as np
import pytest

from sociogeo.datasets.socioseg import BadSampleError, Sample, load_socioseg, to_hf_dataset, write_raw
from sociogeo.errors import DatasetNotFoundError


def _samples(n=3, size=64):
    rng = np.random.default_rng(0)
    out = []
    for i, q in enumerate(["park", "Educational", "Kaisaniemi Park"][:n]):
        m = np.zeros((size, size), bool)
        m[5 + i : 20 + i, 10:30] = True
        out.append(Sample(f"s{i}", q, rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                          rng.integers(0, 255, (size, size, 3), dtype=np.uint8), m))
    return out


def test_raw_layout_round_trip_and_levels(tmp_path):
    src = _samples()
    write_raw(src, tmp_path, "train")
    assert sorted(p.name for p in (tmp_path / "train" / "s0").iterdir()) == [
        "map.png", "mask.png", "question.json", "sat.png"
    ]
    ds = load_socioseg(tmp_path, "train")
    assert len(ds) == 3
    got = list(ds)
    for a, b in zip(src, got):
        assert a.id == b.id and a.query == b.query
        np.testing.assert_array_equal(a.map_image, b.map_image)
        np.testing.assert_array_equal(a.satellite_image, b.satellite_image)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert [s.level for s in got] == ["class", "function", "name"]
    # levels can be overridden
    ds2 = load_socioseg(tmp_path, "train", levels={"s0": "name"})
    assert ds2[0].level == "name" and ds2[1].level is None


def test_bad_samples_are_skipped_with_a_warning_naming_them(tmp_path):
    write_raw(_samples(), tmp_path, "val")
    (tmp_path / "val" / "s1" / "sat.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "val" / "s2" / "question.json").write_text(json.dumps({"query": "wrong key"}))
    ds = load_socioseg(tmp_path, "val")
    with pytest.warns(UserWarning) as rec:
        got = list(ds)
    assert [s.id for s in got] == ["s0"]
    messages = " ".join(str(w.message) for w in rec)
    assert "'s1'" in messages and "'s2'" in messages and "problem" in messages
    with pytest.raises(BadSampleError, match="s1"):
        ds[1]


def test_missing_layout_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no 'test' folder"):
        load_socioseg(tmp_path, "test")
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no sample folders"):
        load_socioseg(tmp_path, "test")
    with pytest.raises(DatasetNotFoundError, match="split must be"):
        load_socioseg(tmp_path, "training")
    with pytest.raises(DatasetNotFoundError, match="no dataset folder"):
        load_socioseg(tmp_path / "nope", "test")


def test_hf_dataset_round_trip(tmp_path):
    ds = to_hf_dataset(_samples())
    assert set(ds.column_names) >= {"id", "problem", "map_image", "sat_image", "mask_label"}
    ds.save_to_disk(str(tmp_path / "saved"))
    back = load_socioseg(tmp_path / "saved", "test")
    got = list(back)
    assert [s.query for s in got] == ["park", "Educational", "Kaisaniemi Park"]
    np.testing.assert_array_equal(got[0].mask, _samples()[0].mask)


def test_hub_offline_gives_a_clear_error():
    code = (
        "from sociogeo.datasets.socioseg import load_socioseg\n"
        "from sociogeo.errors import DatasetNotFoundError\n"
        "try:\n    load_socioseg('vvangfaye/SocioSeg', 'test')\n"
        "except DatasetNotFoundError as e:\n    print('ERR', e)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "HOME": "/tmp/sociogeo-test-home"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERR" in out.stdout, out.stderr[-2000:]
    assert "hf download vvangfaye/SocioSeg" in out.stdout


def test_level_comes_from_levels_then_the_dataset_then_the_query(tmp_path):
    from sociogeo.errors import ConfigError

    samples = _samples()  # queries "park" (a class), "Educational" (a function), "Kaisaniemi Park"
    samples[2].level = "socio-class"  # the dataset says so, although the query reads as a name
    write_raw(samples, tmp_path, "test")
    got = list(load_socioseg(tmp_path, "test"))
    assert [(s.level, s.level_source) for s in got] == [("class", "query"), ("function", "query"),
                                                        ("class", "dataset")]
    # the column can be ignored, or named differently
    got = list(load_socioseg(tmp_path, "test", level_column=None))
    assert [(s.level, s.level_source) for s in got][2] == ("name", "query")
    assert list(load_socioseg(tmp_path, "test", level_column="tier"))[2].level_source == "query"
    # explicit levels win over both
    got = list(load_socioseg(tmp_path, "test", levels=lambda sid, q: "function" if sid == "s2" else "name"))
    assert [(s.level, s.level_source) for s in got] == [("name", "levels"), ("name", "levels"),
                                                        ("function", "levels")]
    # the same rules for a saved datasets.Dataset, whose level column is read too
    to_hf_dataset(samples).save_to_disk(str(tmp_path / "saved"))
    assert [s.level_source for s in load_socioseg(tmp_path / "saved", "test")] == ["query", "query", "dataset"]
    # a value that is no level is an error that says what to do, not a silent guess
    meta = json.loads((tmp_path / "test" / "s0" / "question.json").read_text())
    (tmp_path / "test" / "s0" / "question.json").write_text(json.dumps({**meta, "level": "district"}))
    with pytest.raises(ConfigError, match="'district'; a level must be name, class or function"):
        load_socioseg(tmp_path, "test")[0]
