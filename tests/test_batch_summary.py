"""Figures of the batch summary row: the forecast skill (against the better of persistence and
seasonal persistence) and the areas per year (the whole box, and the polygons touching the outline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xglacier.batch.steps import forecast_skill
from xglacier.models import Climatology, Persistence, SeasonalPersistence


def series(nt: int, *, freq: str = "3MS", seed: int = 0, noise: float = 0.05) -> xr.DataArray:
    """A seasonal cycle that repeats every 4 frames, plus independent noise per frame."""
    rng = np.random.default_rng(seed)
    cycle = rng.uniform(-1, 1, (4, 16, 16))
    v = np.stack([cycle[t % 4] + noise * rng.standard_normal((16, 16)) for t in range(nt)])
    return xr.DataArray(v, dims=("time", "y", "x"), name="ndsi",
                        coords={"time": pd.date_range("2015-01-01", periods=nt, freq=freq),
                                "y": 3.5e6 - 30 * np.arange(16), "x": 7e5 + 30 * np.arange(16)})


def by_hand(v: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> float:
    return 1 - np.mean((pred - v) ** 2) / np.mean((ref - v) ** 2)


@pytest.mark.parametrize("descending", [True, False])
def test_skill_is_against_seasonal_persistence_on_a_seasonal_series(descending):
    da = series(12)
    if not descending:
        da = da.isel(y=slice(None, None, -1))
    v = da.values
    # a persistence model: persistence is a poor reference on a seasonal series, so the
    # reference is seasonal persistence and the model's skill is strongly negative
    skill, ref = forecast_skill(da, Persistence(patch_size=8), 2)
    assert ref == "seasonal_persistence"
    want = by_hand(v[10:], np.repeat(v[9:10], 2, 0), v[6:8])
    assert skill == pytest.approx(want, rel=1e-5) and skill < -10
    # seasonal persistence as the model ties its reference (up to the float32 of the forecast)
    skill, ref = forecast_skill(da, SeasonalPersistence(patch_size=8), 2)
    assert ref == "seasonal_persistence" and skill == pytest.approx(0.0, abs=1e-6)


def test_reference_falls_back_on_persistence():
    # history of two quarters: no frame one year before the targets
    da = series(4)
    skill, ref = forecast_skill(da, Persistence(patch_size=8, n_in=2), 2)
    assert ref == "persistence" and skill == pytest.approx(0.0, abs=1e-6)
    # monthly frames: a year is 12 frames, more than the history of 8 (the model reads no season:
    # forecast refuses a quarterly SeasonalPersistence on monthly frames)
    monthly = series(10, freq="MS")
    skill, ref = forecast_skill(monthly, Climatology(patch_size=8), 2)
    v = monthly.values
    assert ref == "persistence"
    mean = np.repeat(v[4:8].mean(axis=0, keepdims=True), 2, 0)
    assert skill == pytest.approx(by_hand(v[8:], mean, np.repeat(v[7:8], 2, 0)), rel=1e-5)
    # too short for the model: NaN, no reference
    skill, ref = forecast_skill(series(5), Persistence(patch_size=8), 2)
    assert np.isnan(skill) and ref == ""


# -- areas per year: the whole box and the polygons touching the outline -------------------------


@pytest.mark.parametrize("descending", [True, False])
def test_connected_area_counts_the_polygons_touching_the_outline(descending):
    import geopandas as gpd
    from shapely.geometry import box

    from xglacier.batch.config import BatchConfig
    from xglacier.batch.steps import segment_years
    from xglacier.models import NDSIRule

    n, res, x0, y0 = 60, 30.0, 700000.0, 3500000.0
    v = np.zeros((1, n, n), np.float32)
    v[0, 10:21, 10:21] = 0.9  # the glacier: 121 pixels, inside the outline
    v[0, 40:51, 40:51] = 0.9  # a snow field elsewhere in the box: 121 pixels
    y = y0 - res * (np.arange(n) + 0.5)
    scenes = xr.Dataset({"ndsi": (("time", "y", "x"), v)},
                        coords={"time": pd.to_datetime(["2020-08-15"]), "y": y,
                                "x": x0 + res * (np.arange(n) + 0.5)}).rio.write_crs("EPSG:32643")
    if not descending:
        scenes = scenes.isel(y=slice(None, None, -1))
    # the outline covers rows 12-17 and columns 12-17 only: the whole blob touches it
    utm = box(x0 + 12 * res, y0 - 18 * res, x0 + 18 * res, y0 - 12 * res)
    outline = gpd.GeoSeries([utm], crs="EPSG:32643").to_crs("EPSG:4326").iloc[0]
    config = BatchConfig(segment_tile=64, segment_overlap=8)
    polys, areas = segment_years(scenes, NDSIRule(channels=["ndsi"]), config, outline)
    pixel_km2 = res * res / 1e6
    # geodesic areas of UTM pixels differ from 900 m² by the scale factor only (< 0.1 %)
    assert areas["area_km2_2020"] == pytest.approx(242 * pixel_km2, rel=2e-3)
    assert areas["connected_area_km2_2020"] == pytest.approx(121 * pixel_km2, rel=2e-3)
    assert polys["touches_outline"].sum() == 1 and len(polys) == 2
    # an empty scene (NaN everywhere): no polygon, both areas 0
    empty = scenes.copy(data={"ndsi": np.full_like(scenes.ndsi.values, np.nan)})
    polys0, areas0 = segment_years(empty, NDSIRule(channels=["ndsi"]), config, outline)
    assert len(polys0) == 0 and areas0 == {"area_km2_2020": 0.0, "connected_area_km2_2020": 0.0}
    # without an outline: the box's area only, and no column
    polys, areas = segment_years(scenes, NDSIRule(channels=["ndsi"]), config)
    assert list(areas) == ["area_km2_2020"] and "touches_outline" not in polys.columns
