"""BatchConfig: round trips (dict, JSON, TOML), a hash that is stable and sensitive, and a
clear error for every bad field."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from xglacier.batch.config import RUN_ONLY, BatchConfig, config_hash, load_config
from xglacier.errors import InputError, ParameterError

FULL = BatchConfig(
    stac_url="http://127.0.0.1:1/stac", collections=("landsat-c2-l2", "hls"),
    datetime="2016-01-01/2020-12-31",
    max_cloud=30, platforms=("landsat-8",), modifier="planetary_computer:sign_inplace", engine="odc",
    buffer_m=750, resolution=30, bands=("green", "swir16", "nir08", "qa_pixel", "red"),
    cloud_mask=True, mask_flags=("fill", "cloud"), max_missing=0.4, align=False, gap_fill=True,
    gap_fill_iterations=8, composite_freq="1MS", composite_how="median",
    products=("flow", "segment", "forecast"), flow_band="nir08", segment_model="/m/unet",
    segment_months=(8, 9), segment_tile=256, segment_overlap=32, min_area_m2=1e4, dem="/m/dem.tif",
    forecast_model="/m/salstm", forecast_steps=2, threads=2, retries=5, backoff_s=1, timeout_s=20,
    glacier_timeout_s=600,
)


def toml_text(d: dict) -> str:
    """A minimal TOML writer for flat tables of strings, numbers, booleans and lists (None left out)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)
    return "".join(f"{k} = {value(v)}\n" for k, v in d.items() if v is not None)


def test_round_trips():
    for config in (BatchConfig(), FULL):
        d = config.to_dict()
        assert list(d) == [f.name for f in dataclasses.fields(BatchConfig)]
        assert BatchConfig.from_dict(d) == config
        assert BatchConfig.from_dict(json.loads(json.dumps(d))) == config


def test_toml_round_trip(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(toml_text(FULL.to_dict()))
    assert load_config(path) == FULL
    assert config_hash(load_config(path)) == config_hash(FULL)


def test_toml_none_sets_the_nullable_fields_to_none(tmp_path):
    """TOML has no null: ``"none"`` stands for None in every field that may be None."""
    path = tmp_path / "run.toml"
    path.write_text('local_scenes = "scenes"\nmax_cloud = "none"\nplatforms = "none"\nmax_missing = "none"\n'
                    'glacier_timeout_s = "none"\nsegment_model = "none"\n')
    config = load_config(path)
    assert config.local_scenes == str(tmp_path / "scenes")  # a path, not none
    assert (config.max_cloud, config.platforms, config.max_missing, config.glacier_timeout_s,
            config.segment_model) == (None,) * 5
    assert config == BatchConfig(local_scenes=str(tmp_path / "scenes"), max_cloud=None, platforms=None,
                                 max_missing=None, glacier_timeout_s=None)
    # a field that cannot be None still refuses the word, naming the file and the field
    path.write_text('buffer_m = "none"\n')
    with pytest.raises(ParameterError, match=r"run.toml: BatchConfig: buffer_m='none'"):
        load_config(path)


def test_hash_is_sha256_of_the_canonical_json():
    settings = {k: v for k, v in FULL.to_dict().items() if k not in RUN_ONLY}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    assert config_hash(FULL) == hashlib.sha256(text.encode()).hexdigest()


def test_hash_is_stable_across_processes_and_spellings():
    code = ("from xglacier.batch.config import BatchConfig, config_hash; "
            "print(config_hash(BatchConfig(buffer_m=750, products=['flow'], segment_months=[7, 8, 9])))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[1], env={"PYTHONHASHSEED": "123"})
    same = BatchConfig(buffer_m=750.0, products=("flow",), segment_months=(7, 8, 9))
    assert other.stdout.strip() == config_hash(same)
    assert config_hash(BatchConfig(max_cloud=20)) == config_hash(BatchConfig(max_cloud=20.0))


ALTERNATIVES = {
    "stac_url": "http://example.org/stac", "collections": ("other",), "datetime": "2013-04-01/2022-12-30",
    "max_cloud": 19.5, "platforms": None, "modifier": "m:f", "engine": "odc", "local_scenes": "scenes/{id}",
    "buffer_m": 999.0, "resolution": 10.0, "bands": ("green", "swir16", "nir08", "qa_pixel", "red"),
    "cloud_mask": False, "mask_flags": ("cloud",), "max_missing": None, "align": False, "gap_fill": False,
    "gap_fill_iterations": 15, "composite_freq": "1MS", "composite_how": "median", "products": (),
    "flow_band": "green", "segment_model": "a", "segment_months": (8,), "segment_tile": 256,
    "segment_overlap": 0, "min_area_m2": 1.0, "dem": "d.tif", "forecast_model": "b", "forecast_steps": 3,
    "threads": 4, "retries": 0, "backoff_s": 0.5, "timeout_s": 1.0, "glacier_timeout_s": None,
}


def test_hash_changes_with_every_field():
    assert set(ALTERNATIVES) == {f.name for f in dataclasses.fields(BatchConfig)}
    base = config_hash(BatchConfig())
    hashes = {base}
    for name, value in ALTERNATIVES.items():
        changed = BatchConfig().replace(**{name: value})
        assert getattr(changed, name) != getattr(BatchConfig(), name), name
        if name in RUN_ONLY:
            # how the run goes (threads, retries, timeouts) cannot change a product
            assert config_hash(changed) == base, name
        else:
            hashes.add(config_hash(changed))
    assert len(hashes) == len(ALTERNATIVES) - len(RUN_ONLY) + 1


def test_frozen_and_normalised():
    config = BatchConfig(bands=["green", "swir16", "qa_pixel"], products=[], flow_band="green",
                         segment_months=[7], buffer_m=500)
    assert config.bands == ("green", "swir16", "qa_pixel") and config.segment_months == (7,)
    assert isinstance(config.buffer_m, float)
    assert BatchConfig(datetime=["2016-01-01", "2017-01-01"]).datetime == "2016-01-01/2017-01-01"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.threads = 2


@pytest.mark.parametrize("field, value, match", [
    ("stac_url", "", "stac_url=''; expected a non-empty string"),
    ("collections", "landsat-c2-l2", "collections='landsat-c2-l2'; expected a list of strings"),
    ("collections", [], "collections=.*expected at least one"),
    ("datetime", "2020-01-01", "datetime='2020-01-01'; expected 'START/END'"),
    ("datetime", "2021-01-01/2020-01-01", "start after its end"),
    ("datetime", "2020-13-01/2021-01-01", "datetime="),
    ("max_cloud", 120, "max_cloud"),
    ("max_cloud", "20", "max_cloud"),
    ("platforms", ["landsat-8", "landsat-8"], "distinct"),
    ("modifier", "planetary_computer.sign", "modifier=.*'module:function'"),
    ("engine", "gdal", "engine='gdal'"),
    ("buffer_m", -1, "buffer_m"),
    ("buffer_m", float("nan"), "buffer_m"),
    ("resolution", 0, "resolution"),
    ("bands", ["green", "qa_pixel", "nir08"], "lacks 'swir16'"),
    ("bands", ["green", "swir16", "nir08"], "cloud_mask=True but bands"),
    ("cloud_mask", 1, "cloud_mask=1; expected True or False"),
    ("mask_flags", ["cloud", "snow"], r"mask_flags holds \['snow'\]"),
    ("max_missing", 1.5, "max_missing"),
    ("gap_fill_iterations", 0, "gap_fill_iterations"),
    ("gap_fill_iterations", 2.0, "gap_fill_iterations"),
    ("composite_freq", "quarterly", "composite_freq='quarterly' is not a pandas frequency"),
    ("composite_how", "mode", "composite_how='mode'"),
    ("products", ["flow", "velocity"], "products='velocity'"),
    ("products", ["segment"], "products holds 'segment' but segment_model is None"),
    ("flow_band", "red", "flow_band='red' is not in bands"),
    ("segment_months", [0], "segment_months"),
    ("segment_months", [], "segment_months"),
    ("segment_tile", 4, "segment_tile"),
    ("segment_overlap", 300, "segment_overlap=300 with segment_tile=512"),
    ("forecast_steps", 0, "forecast_steps"),
    ("threads", 0, "threads"),
    ("threads", True, "threads"),
    ("retries", -1, "retries"),
    ("timeout_s", 0, "timeout_s"),
    ("glacier_timeout_s", 0, r"glacier_timeout_s=0; expected a finite number > 0 or None"),
    ("glacier_timeout_s", -5.0, r"glacier_timeout_s=-5.0; expected a finite number > 0 or None"),
    ("glacier_timeout_s", "3600", r"glacier_timeout_s='3600'; expected a finite number"),
    ("glacier_timeout_s", True, r"glacier_timeout_s=True; expected a finite number"),
    ("glacier_timeout_s", float("inf"), r"glacier_timeout_s=inf; expected a finite number"),
    ("local_scenes", 3, "local_scenes=3"),
])
def test_bad_fields(field, value, match):
    with pytest.raises(ParameterError, match=f"^BatchConfig: .*{match}"):
        BatchConfig(**{field: value})


def test_both_sources_are_refused():
    with pytest.raises(ParameterError, match=r"stac_url=.* and local_scenes=.* are both set"):
        BatchConfig(stac_url="http://x", local_scenes="scenes")


def test_unknown_keys():
    with pytest.raises(ParameterError, match="unknown key 'treads'"):
        BatchConfig.from_dict({"treads": 2})
    with pytest.raises(ParameterError, match="expected a mapping"):
        BatchConfig.from_dict([("threads", 2)])


def test_load_config_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(InputError, match=r"missing.toml does not exist"):
        load_config(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text("threads = \n")
    with pytest.raises(InputError, match=r"bad.toml is not a valid TOML file"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("threads = 2\nbuffer = 3\n")
    with pytest.raises(ParameterError, match=r"unknown.toml: BatchConfig: unknown key 'buffer'"):
        load_config(unknown)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('threads = "two"\n')
    with pytest.raises(ParameterError, match=r"wrong.toml: BatchConfig: threads='two'"):
        load_config(wrong)


def test_relative_paths_are_taken_from_the_config_folder(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "run.toml"
    path.write_text('local_scenes = "scenes/{id}"\nforecast_model = "/abs/salstm"\ndem = "../dem.tif"\n'
                    'products = ["forecast"]\n')
    config = load_config(path)
    assert config.local_scenes == str(tmp_path / "run" / "scenes" / "{id}")
    assert config.forecast_model == "/abs/salstm"
    assert Path(config.dem) == tmp_path / "run" / ".." / "dem.tif"


def test_the_docs_table_lists_every_field_with_its_default():
    import tomllib

    text = (Path(__file__).resolve().parents[1] / "docs" / "single-glacier.md").read_text()
    section = text.split("## The configuration")[1].split("## Examples")[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0] != "`field`":
            literal = cells[1].strip("`")
            rows[cells[0].strip("`")] = None if literal == "none" else tomllib.loads(f"v = {literal}")["v"]
    assert rows == BatchConfig().to_dict()
