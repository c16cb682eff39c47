"""Synthetic Landsat-like glacier cubes with ground truth: xglacier's embedded default data.

:func:`synthetic_cube` renders a valley glacier on a synthetic DEM, seen by a
Landsat-like sensor on irregular dates: seasonal snow, a glacier that flows downhill
with a known velocity field (its surface texture is advected by it) and whose terminus
retreats, a clean-ice upper part and a debris-covered tongue, a proglacial lake,
terrain shading, clouds and cloud shadows flagged in ``qa_pixel``, nodata stripes and
blocks, per-scene sub-pixel misregistration and sensor noise. Years differ: the snowline,
the clean-ice albedo, the debris line and the cloudiness are drawn once per calendar year.
Everything a test may want to check against is returned in a second Dataset, the truth.

Every scene is rendered by one Dask task when it is computed, so a large preset costs
memory only for what is computed. Geometry is analytic in continuous pixel coordinates
(textures are cubic splines), so misregistration and ice motion are exact sub-pixel
displacements, not resampling artefacts.

Coordinates used below: ``r`` (row, increasing southwards) and ``c`` (column,
increasing eastwards) in pixels of the output grid, continuous.
"""

from __future__ import annotations

import inspect
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from .._attrs import georeference
from .._validate import check_choice, check_int, check_number
from ..errors import ParameterError
from ..landsat import REFLECTANCE_BANDS
from .scenes import acquisitions, draw_scenes, draw_years, render, snowline_altitude
from .world import CLASSES, build_world

_BAND_ATTRS = {"units": "1", "long_name": "surface reflectance"}

PRESETS: dict[str, dict[str, Any]] = {
    "parvati": dict(
        shape=(800, 800), start="2013-04-01", end="2022-01-01",
        gaps=(("2016-04-01", "2016-07-01"),),
    ),
}


def synthetic_cube(
    shape: tuple[int, int] = (128, 128),
    start: str = "2020-01-01",
    end: str | None = None,
    seed: int = 0,
    preset: str | None = None,
    resolution: float = 30.0,
    crs: str = "EPSG:32643",
    origin: tuple[float, float] = (734460.0, 3568110.0),
    max_shift: float = 1.0,
    ice_speed: float = 120.0,
    retreat_rate: float = 15.0,
    noise: float = 0.005,
    cloud_scale: float = 1.0,
    gaps: tuple[tuple[str, str], ...] = (),
    snowline_variability: float = 150.0,
    albedo_variability: float = 0.05,
    debris_variability: float = 60.0,
    cloud_variability: float = 0.3,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Generate a raw Landsat-like scene cube of a valley glacier and its ground truth.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of each scene.
    start, end
        Acquisition period (``end`` excluded; by default six years after ``start``, enough
        quarters for a time split of 4 + 4-quarter forecasting windows); dates follow an
        8/16-day revisit with random losses.
    seed
        Everything is deterministic for a given seed.
    preset
        ``"parvati"``: 800x800 pixels from 2013-04 to 2022 (about 270 scenes) with one
        empty quarter, for benchmarks. Explicit keywords other than the defaults of
        ``shape``, ``start``, ``end`` and ``gaps`` are kept.
    resolution, crs, origin
        Pixel size (m), projected CRS and the (west, north) corner of the grid;
        the default is UTM 43N over the Parvati glacier, India.
    max_shift
        Largest per-scene misregistration in pixels (uniform in ``[-max_shift, max_shift]``
        for x and y independently).
    ice_speed
        Largest glacier surface speed in m/yr.
    retreat_rate
        Terminus retreat in m/yr (a steady trend; the truth's ``terminus_y`` follows it).
    noise
        Standard deviation of the Gaussian sensor noise (reflectance).
    cloud_scale
        Multiplies every scene's cloud fraction (0 gives cloud-free scenes).
    gaps
        ``(start, end)`` periods without any acquisition.
    snowline_variability
        Standard deviation (m) of the yearly snowline altitude anomaly, one draw per
        calendar year (truth ``snowline_anomaly``); 0 repeats the same snowline every year.
    albedo_variability
        Standard deviation of the yearly factor on the clean-ice reflectance (impurities,
        a darker or brighter ice year; truth ``ice_albedo_factor``, clipped to 0.5-1.5).
    debris_variability
        Standard deviation (m) of the yearly up-glacier shift of the upper edge of the
        debris-covered tongue (truth ``debris_line_shift``).
    cloud_variability
        Standard deviation of the logarithm of the yearly factor (mean 1) on every scene's
        cloud fraction (truth ``cloud_factor``): cloudier and clearer years.
        The last three come from a random stream of their own: set to 0 they give exactly
        the scenes of a generator without them, and changing them changes no date,
        shift or snowline. Real glaciers do not repeat their year, so with the defaults
        no naive forecast (the same season a year earlier) is exact by construction.

    Returns
    -------
    cube : xarray.Dataset
        ``time, y, x`` with float32 reflectance ``blue, green, red, nir08, swir16,
        swir22`` (NaN = nodata) and uint16 ``qa_pixel`` (Landsat C2 bit semantics: fill
        pixels are exactly 1), per-scene coordinates ``id``, ``platform``,
        ``cloud_cover`` (percent), and a CF ``spatial_ref``. Lazy, one task per scene.
    truth : xarray.Dataset
        ``dem`` (m), ``glacier_class`` (time, y, x; see :data:`CLASSES`),
        ``velocity_x``/``velocity_y``/``speed`` (m/yr, east/north, at the reference
        time ``attrs["velocity_reference_time"]``), ``shift_x``/``shift_y`` (pixels:
        scene content is displaced by +shift_x columns and +shift_y rows relative to the
        ground grid), ``clear_sky`` (no cloud, shadow or cirrus), ``nodata`` and
        ``true_<band>`` (the observed values including those hidden under nodata);
        per scene ``snowline_altitude`` (m; snow covers half of the ground there) and
        ``terminus_y`` (the y coordinate of the glacier terminus); per calendar year
        (dimension ``year``) ``snowline_anomaly`` (m), ``ice_albedo_factor``,
        ``debris_line_shift`` (m) and ``cloud_factor``. The ground fields (dem, class,
        velocity) are on the unshifted grid; the per-scene fields are on the observed grid.

    Examples
    --------
    >>> cube, truth = synthetic_cube(shape=(64, 64), end="2020-06-01")
    >>> sorted(cube.data_vars)[:3], cube.green.dtype.name, cube.rio.crs.to_epsg()
    (['blue', 'green', 'nir08'], 'float32', 32643)
    """
    if preset is not None:
        check_choice("synthetic_cube", "preset", preset, sorted(PRESETS))
        p = PRESETS[preset]
        shape, start, end, gaps = p["shape"], p["start"], p["end"], p["gaps"]
    spreads = (snowline_variability, albedo_variability, debris_variability, cloud_variability)
    shape, t_start, t_end = _check_arguments(shape, start, end, max_shift, ice_speed, noise, cloud_scale,
                                             *spreads)
    rng = np.random.default_rng([seed, 0])
    times = acquisitions(t_start, t_end, rng, gaps)
    if not times:
        raise ParameterError("synthetic_cube: no acquisition falls between start and end outside gaps")
    years_total = (t_end - t_start).total_seconds() / (365.25 * 86400)
    yearly = draw_years(seed, t_start.year, (t_end - pd.Timedelta(1, "ns")).year, cloud=cloud_variability,
                        albedo=albedo_variability, debris=debris_variability)
    scenes = draw_scenes(times, t_start, rng, max_shift, cloud_scale, snowline_sd=snowline_variability,
                         yearly=yearly, resolution=resolution)
    world = build_world(shape, resolution, ice_speed, retreat_rate, noise, seed, max_shift, years_total)

    world_d = dask.delayed(world, pure=True)
    tok = dask.base.tokenize(shape, str(t_start), str(t_end), seed, resolution, max_shift, ice_speed,
                             retreat_rate, noise, cloud_scale, gaps, spreads)
    renders = [
        dask.delayed(render, pure=True, name=f"synthetic-scene-{tok}-{i}")(world_d, sc)
        for i, sc in enumerate(scenes)
    ]

    def stack(var: str, dtype: Any) -> dsa.Array:
        return dsa.stack([dsa.from_delayed(d[var], shape, dtype=dtype) for d in renders])

    h, w = shape
    x = origin[0] + (np.arange(w) + 0.5) * resolution
    y = origin[1] - (np.arange(h) + 0.5) * resolution
    time = pd.DatetimeIndex(times).as_unit("ns")
    cube = _cube(stack, scenes, time, y, x, rng, seed)
    ref_time = t_start + pd.Timedelta(days=world.t_ref * 365.25)
    truth = xr.merge([_truth(stack, world, scenes, time, y, x, resolution),
                      _yearly_truth(world, scenes, yearly, time, y)], combine_attrs="override")
    truth.attrs.update(velocity_reference_time=str(ref_time), terminus_retreat_rate_m_per_yr=retreat_rate,
                       snowline_variability_m=snowline_variability, albedo_variability=albedo_variability,
                       debris_variability_m=debris_variability, cloud_variability=cloud_variability)
    return _georeference(cube, crs), _georeference(truth, crs)


_NON_NEGATIVE = ("max_shift", "ice_speed", "noise", "cloud_scale", "snowline_variability",
                 "albedo_variability", "debris_variability", "cloud_variability")


def _check_arguments(shape: Any, start: Any, end: Any, *non_negative: float
                     ) -> tuple[tuple[int, int], pd.Timestamp, pd.Timestamp]:
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ParameterError(f"synthetic_cube: shape={shape!r}; expected (rows, cols), each >= 16")
    rows, cols = (check_int("synthetic_cube", "shape", n, low=16) for n in shape)
    t_start = pd.Timestamp(start)
    t_end = t_start + pd.DateOffset(years=6) if end is None else pd.Timestamp(end)
    if t_end <= t_start + pd.Timedelta(days=20):
        raise ParameterError(f"synthetic_cube: end={end!r} must be at least 20 days after start={start!r}")
    for label, value in zip(_NON_NEGATIVE, non_negative, strict=True):
        check_number("synthetic_cube", label, value, low=0)
    return (rows, cols), t_start, t_end


def _cube(stack: Any, scenes: list[Any], time: pd.DatetimeIndex, y: np.ndarray, x: np.ndarray,
          rng: np.random.Generator, seed: int) -> xr.Dataset:
    """The observed cube: bands, QA and per-scene metadata (id, platform, cloud cover)."""
    platform = np.where(
        (time >= pd.Timestamp("2021-11-01")) & (np.arange(len(time)) % 2 == 1),
        "landsat-9", "landsat-8",
    )
    cloud_cover = np.clip(
        np.array([100 * s.cloud for s in scenes]) + rng.normal(0, 2, len(scenes)), 0, 100
    ).round(2)
    ids = [
        f"{'LC09' if p == 'landsat-9' else 'LC08'}_L2SP_147038_{t:%Y%m%d}_SYNTH_{i:03d}"
        for i, (p, t) in enumerate(zip(platform, time, strict=True))
    ]
    coords = {
        "time": time, "y": y, "x": x,
        "id": ("time", np.array(ids)),
        "platform": ("time", platform.astype(str)),
        "cloud_cover": ("time", cloud_cover),
    }
    data_vars = {
        b: (("time", "y", "x"), stack(b, np.float32),
            {**_BAND_ATTRS, "long_name": f"{b} surface reflectance"})
        for b in REFLECTANCE_BANDS
    }
    data_vars["qa_pixel"] = (
        ("time", "y", "x"), stack("qa_pixel", np.uint16),
        {"long_name": "Landsat Collection 2 QA_PIXEL bit flags", "units": "1"},
    )
    cube = xr.Dataset(data_vars, coords=coords, attrs={
        "title": "xglacier synthetic glacier cube",
        "source": "xglacier.datasets.synthetic_cube",
        "synthetic_seed": seed,
    })
    cube["cloud_cover"].attrs = {"long_name": "scene cloud cover", "units": "percent"}
    return cube


def _truth(stack: Any, world: Any, scenes: list[Any], time: pd.DatetimeIndex, y: np.ndarray,
           x: np.ndarray, resolution: float) -> xr.Dataset:
    """The truth: DEM, velocity, per-scene shifts, classes, clear sky, nodata, hidden values."""
    h, w = len(y), len(x)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    vr, vc = world.velocity_px(rows, cols)
    truth_vars: dict[str, Any] = {
        "dem": (("y", "x"), world.dem(rows, cols).astype(np.float32),
                {"long_name": "surface altitude", "standard_name": "surface_altitude", "units": "m"}),
        "velocity_x": (("y", "x"), (vc * resolution).astype(np.float32),
                       {"long_name": "ice surface velocity, eastward", "units": "m yr-1"}),
        "velocity_y": (("y", "x"), (-vr * resolution).astype(np.float32),
                       {"long_name": "ice surface velocity, northward", "units": "m yr-1"}),
        "speed": (("y", "x"), (np.hypot(vr, vc) * resolution).astype(np.float32),
                  {"long_name": "ice surface speed", "units": "m yr-1"}),
        "shift_x": ("time", np.array([s.shift[0] for s in scenes]),
                    {"long_name": "scene content displacement along x (columns)", "units": "pixel"}),
        "shift_y": ("time", np.array([s.shift[1] for s in scenes]),
                    {"long_name": "scene content displacement along rows (southward)", "units": "pixel"}),
        "glacier_class": (("time", "y", "x"), stack("glacier_class", np.uint8), {
            "long_name": "glacier class", "flag_values": list(CLASSES),
            "flag_meanings": " ".join(CLASSES.values()),
        }),
        "clear_sky": (("time", "y", "x"), stack("clear_sky", bool),
                      {"long_name": "pixel free of cloud, cloud shadow and cirrus"}),
        "nodata": (("time", "y", "x"), stack("nodata", bool),
                   {"long_name": "pixel set to nodata in the cube"}),
    }
    for b in REFLECTANCE_BANDS:
        truth_vars[f"true_{b}"] = (("time", "y", "x"), stack(f"true_{b}", np.float32),
                                   {**_BAND_ATTRS, "long_name": f"{b} reflectance under nodata too"})
    return xr.Dataset(truth_vars, coords={"time": time, "y": y, "x": x}, attrs={
        "title": "ground truth of the xglacier synthetic cube",
    })


def _yearly_truth(world: Any, scenes: list[Any], yearly: Any, time: pd.DatetimeIndex, y: np.ndarray
                  ) -> xr.Dataset:
    """Per-scene snowline and terminus, and the yearly draws (dimension ``year``)."""
    res = world.resolution
    anomaly = np.full(yearly.years.size, np.nan)
    for sc in scenes:
        anomaly[yearly.index(sc.time.year)] = sc.snowline_offset
    terminus_r = np.array([world.terminus(sc.years) for sc in scenes])
    return xr.Dataset({
        "snowline_altitude": ("time", snowline_altitude(np.array([sc.doy for sc in scenes]),
                                                        np.array([sc.snowline_offset for sc in scenes])),
                              {"long_name": "altitude where snow covers half of the ground", "units": "m"}),
        # row r of the continuous grid is at y[0] - r * res (pixel centres at whole rows)
        "terminus_y": ("time", y[0] - terminus_r * res,
                       {"long_name": "y coordinate of the glacier terminus (down-valley end of the ice)",
                        "units": "m"}),
        "snowline_anomaly": ("year", anomaly, {
            "long_name": "yearly snowline altitude anomaly (NaN: no scene that year)", "units": "m"}),
        "ice_albedo_factor": ("year", yearly.ice_albedo,
                              {"long_name": "yearly factor on the clean-ice reflectance", "units": "1"}),
        "debris_line_shift": ("year", yearly.debris_shift_m, {
            "long_name": "up-glacier shift of the upper edge of the debris-covered tongue", "units": "m"}),
        "cloud_factor": ("year", yearly.cloud_factor,
                         {"long_name": "yearly factor on the scenes' cloud fractions", "units": "1"}),
    }, coords={"time": time, "year": yearly.years})


def _georeference(ds: xr.Dataset, crs: str) -> xr.Dataset:
    # the GeoTransform lets GDAL read the grid without the coordinate arrays
    return georeference(ds, None, crs=crs).rio.write_transform()


#: What makes the demo's sample; ``open_sample``'s overrides may change any of these but the grid and dates.
SAMPLE: dict[str, Any] = dict(
    shape=(200, 200), start="2014-01-01", end="2022-01-01",
    gaps=(("2019-07-01", "2019-10-01"),), retreat_rate=30.0,
)
_FIXED = ("shape", "start", "end", "preset", "seed")
#: The demo's sample seed (see :func:`open_sample`): chosen on the data alone, before any model.
SAMPLE_SEED = 3


def open_sample(seed: int = SAMPLE_SEED, **overrides: Any) -> tuple[xr.Dataset, xr.Dataset]:
    """The demo's sample: a 200x200 synthetic cube over 2014-2021 and its truth.

    Eight years (32 quarterly composites, one quarter without scenes in 2019) with the
    default year-to-year variability and a terminus retreating by 30 m/yr: a time split of
    4 + 4-quarter forecasting windows keeps 11 training windows, 4 validation and 4 test
    windows (``split(by="time", test=0.15, val=0.15)``), the last year held out.

    Parameters
    ----------
    seed
        Seed of the landscape and of every scene. The default, :data:`SAMPLE_SEED` (3), is
        the lowest seed whose held-out year can tell a forecaster from seasonal persistence:
        there the mean of each quarter over the earlier years (the climate oracle of
        :func:`xglacier.forecasting.ceiling.held_out_ceiling`, no model) scores an MSE
        interval below seasonal persistence's. On a held-out year that happens to resemble
        the year before as much as the climate (seeds 0, 1, 2 and the former default 42), no
        forecast from the past can be told from seasonal persistence, whatever its skill
        (docs/forecasting.md, benchmarks/RESULTS.md).
    **overrides
        Other keywords of :func:`synthetic_cube` that replace the sample's (for instance
        ``snowline_variability=0`` for the same sample without a yearly snowline anomaly);
        the grid and the dates stay the sample's.

    Examples
    --------
    >>> cube, truth = open_sample()
    >>> cube.sizes["y"], cube.sizes["x"], truth.sizes["year"]
    (200, 200, 8)
    """
    fixed = sorted(set(overrides) & set(_FIXED))
    if fixed:
        raise ParameterError(f"open_sample: {', '.join(fixed)} cannot be changed (the sample's grid and "
                             f"dates are fixed); use synthetic_cube for another one")
    known = set(inspect.signature(synthetic_cube).parameters)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(f"open_sample: unknown keyword(s) {', '.join(unknown)}; expected keywords of "
                             f"synthetic_cube")
    return synthetic_cube(**{**SAMPLE, **overrides}, seed=seed)
