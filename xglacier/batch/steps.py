"""The per-glacier pipeline on arrays, one function per step, shared by
:func:`~xglacier.batch.glacier.process_glacier` and the single-glacier commands.

Every step calls the library's public functions: :func:`~xglacier.mask_clouds`,
:func:`~xglacier.filter_scenes`, :func:`~xglacier.align_ecc`, :func:`~xglacier.fill_gaps`,
:func:`~xglacier.ndsi`, :func:`~xglacier.composite`, :func:`~xglacier.flow`,
:func:`~xglacier.segment`, :func:`~xglacier.polygonize`, :func:`~xglacier.forecast`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from .._validate import frames_per_year
from ..errors import EmptySceneError, InputError, MissingBandError, NarrowGlacierWarning
from ..forecasting.forecast import forecast
from ..forecasting.models.base import season_inputs
from ..io.store import to_netcdf, to_zarr
from ..landsat import QA_BAND, REFLECTANCE_BANDS
from ..motion import flow
from ..motion.flow import WINSIZE
from ..preprocess.align import align_ecc
from ..preprocess.composite import composite
from ..preprocess.gapfill import fill_gaps
from ..preprocess.indices import ndsi
from ..preprocess.masks import mask_clouds
from ..preprocess.scenes import filter_scenes
from ..segmentation.labels import rasterize
from ..segmentation.segment import segment
from ..segmentation.vectors import polygonize
from .config import BatchConfig


def clip(cube: xr.Dataset, bounds: tuple[float, float, float, float], where: str) -> xr.Dataset:
    """The pixels of ``cube`` whose centres lie in ``bounds`` (x/y either way round), lazily.

    Raises :class:`EmptySceneError` when no pixel centre is inside.
    """
    xmin, ymin, xmax, ymax = bounds
    x, y = cube["x"].values, cube["y"].values
    ix = np.flatnonzero((x >= xmin) & (x <= xmax))
    iy = np.flatnonzero((y >= ymin) & (y <= ymax))
    if not len(ix) or not len(iy):
        raise EmptySceneError(
            f"{where}: the scenes (x {x.min():.0f}..{x.max():.0f}, y {y.min():.0f}..{y.max():.0f} in "
            f"{cube.rio.crs}) do not cover the glacier's box {[round(b) for b in bounds]}")
    out = cube.isel(x=slice(ix[0], ix[-1] + 1), y=slice(iy[0], iy[-1] + 1))
    # the stored GeoTransform is the uncut grid's: write the cut one
    return out.rio.write_transform(out.rio.transform(recalc=True))


def clean(cube: xr.Dataset, config: BatchConfig, where: str) -> tuple[xr.Dataset, xr.Dataset, dict[str, int]]:
    """Scene cloud limit, cloud mask, scene filter, ECC alignment, gap filling.

    Returns the gap-filled cube, the aligned (not filled) cube and the scene counts
    ``scenes_used``, ``scenes_dropped``. The kept, masked scenes are persisted (read once).
    """
    n = cube.sizes["time"]
    if config.max_cloud is not None and "cloud_cover" in cube.coords:
        # scenes that state no cloud cover (local files without tags) are kept: their
        # clouds are masked per pixel and counted by the missing-pixel limit below
        cube = cube.isel(time=np.flatnonzero(~(cube["cloud_cover"].values > config.max_cloud)))
    if config.cloud_mask:
        cube = mask_clouds(cube, flags=config.mask_flags).drop_vars(QA_BAND)
    if config.max_missing is not None and cube.sizes["time"]:
        cube = filter_scenes(cube, max_cloud=None, max_missing=config.max_missing)
    used = cube.sizes["time"]
    if used == 0:
        raise EmptySceneError(f"{where}: every one of the {n} scenes was dropped (cloud cover over "
                              f"{config.max_cloud} % or over {config.max_missing} of the pixels missing)")
    cube = cube.persist()
    aligned = align_ecc(cube) if config.align and used >= 2 else cube
    bands = [b for b in aligned.data_vars if np.issubdtype(aligned[b].dtype, np.floating)]
    filled = fill_gaps(aligned, max_iter=config.gap_fill_iterations, bands=bands) if config.gap_fill \
        else aligned
    return filled, aligned, {"scenes_used": int(used), "scenes_dropped": int(n - used)}


def composites(cube: xr.Dataset, config: BatchConfig, where: str
               ) -> tuple[xr.Dataset, xr.Dataset | None, dict[str, int]]:
    """The cleaned scenes as composites, computed in one pass over the graph.

    Returns the composites Dataset (``ndsi``, and ``config.flow_band`` of the aligned, not
    gap-filled scenes when it was read: gap filling smooths the texture the flow follows),
    the yearly median composites of the reflectance bands over ``config.segment_months``
    (None when ``"segment"`` is not asked or no scene falls in those months), and the counts
    ``scenes_used``, ``scenes_dropped``, ``alignment_failures``.
    """
    filled, aligned, info = clean(cube, config, where)
    freq, how = config.composite_freq, config.composite_how
    out = {"ndsi": composite(ndsi(filled), freq=freq, how=how)}
    if config.flow_band in aligned.data_vars and config.flow_band not in ("ndsi",):
        out[config.flow_band] = composite(aligned[config.flow_band], freq=freq, how=how)
    summer = None
    if "segment" in config.products:
        summer = yearly_summer(filled[[b for b in filled.data_vars if b in REFLECTANCE_BANDS]],
                               config.segment_months)
    failed = (~aligned["ecc_converged"]).sum() if "ecc_converged" in aligned.coords else 0
    comps, summer, failed = dask.compute(xr.Dataset(out), summer, failed)
    comps.attrs = {"title": "xglacier: NDSI composites", "Conventions": "CF-1.8",
                   "history": out["ndsi"].attrs.get("history", "")}
    if summer is not None:  # years without a scene in those months have nothing to segment
        summer = summer.isel(time=np.flatnonzero(summer["n_scenes"].values > 0))
    return comps, summer, {**info, "alignment_failures": int(failed)}


def yearly_summer(ds: xr.Dataset, months: tuple[int, ...]) -> xr.Dataset | None:
    """Per year, the median of the time steps of ``ds`` in ``months`` (lazy; time = 1 January,
    coordinate ``n_scenes``); None when no time step falls in those months."""
    keep = np.flatnonzero(ds["time"].dt.month.isin(months).values)
    if not len(keep):
        return None
    return composite(ds.isel(time=keep), freq="YS", how="median", interpolate=False)


def outline_masks(geometry: Any, like: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(y, x)`` maps of the glacier (pixel centres inside the outline) and of stable
    ground (farther than two pixels from it), on ``like``'s grid."""
    outline = gpd.GeoSeries([geometry], crs="EPSG:4326")
    glacier = rasterize(outline, like=like).values > 0
    res = float(np.abs(np.diff(like["x"].values[:2])).max()) if like.sizes["x"] > 1 else 30.0
    margin = outline.to_crs(like.rio.crs).buffer(2 * res)
    stable = rasterize(margin, like=like).values == 0
    return glacier, stable


def warn_if_narrow(geometry: Any, like: xr.DataArray, *, window: int = WINSIZE) -> float:
    """Warn (:class:`NarrowGlacierWarning`) when the outline is narrower than the flow window.

    The width is ``2 * area / perimeter`` in pixels of ``like`` (a long glacier's width).
    Measured on synthetic glaciers (true median speed 53-54 m/yr, default flow): widths of
    7.3, 9.2, 11.1 and 14.8 px gave 19, 39, 43 and 55 m/yr. Returns the width.
    """
    shape = gpd.GeoSeries([geometry], crs="EPSG:4326").to_crs(like.rio.crs).iloc[0]
    res = float(np.abs(np.diff(like["x"].values[:2])).max()) if like.sizes["x"] > 1 else 30.0
    width = 2 * shape.area / shape.length / res if shape.length > 0 else 0.0
    if width < window:
        warnings.warn(f"flow: the glacier is {width:.1f} px wide (2 x area / perimeter), narrower than the "
                      f"flow window of {window} px; its speeds are averaged with the ground beside it and "
                      "underestimated (on synthetic glaciers 7-11 px wide: 36-81 % of the true speed)",
                      NarrowGlacierWarning, stacklevel=3)
    return width


def velocity(frames: xr.DataArray, geometry: Any | None) -> tuple[xr.Dataset, dict[str, float]]:
    """Surface velocity between consecutive composites, and the median speeds (m/yr) of the
    per-pixel median motion over the glacier and over stable ground (NaN without an outline)."""
    if frames.sizes["time"] < 2:
        raise InputError(f"flow: variable {frames.name!r} has {frames.sizes['time']} composite(s); the "
                         "surface velocity needs at least two")
    stable = glacier = None
    if geometry is not None:
        glacier, stable = outline_masks(geometry, frames.isel(time=0, drop=True))
        warn_if_narrow(geometry, frames)
    # a box without stable ground (no buffer): the noise floor over every valid pixel instead
    on_grid = None if stable is None or not stable.any() else \
        xr.DataArray(stable, dims=("y", "x"), coords={"y": frames.y, "x": frames.x})
    vel = flow(frames, stable=on_grid).compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels never valid stay NaN
        speed = np.hypot(np.nanmedian(vel.u.values, axis=0), np.nanmedian(vel.v.values, axis=0))
        speeds = {"speed_glacier_m_a": np.nan, "speed_stable_m_a": np.nan}
        if glacier is not None:
            speeds = {"speed_glacier_m_a": float(np.nanmedian(speed[glacier])) if glacier.any() else np.nan,
                      "speed_stable_m_a": float(np.nanmedian(speed[stable])) if stable.any() else np.nan}
    return vel, speeds


def _feature_scene(scene: xr.Dataset, channels: list[str]) -> xr.DataArray | None:
    """The model's channels stacked as they are when the Dataset holds them all (e.g. NDSI
    composites for a model of one ``ndsi`` channel); None when they must be built."""
    if not all(c in scene.data_vars for c in channels):
        return None
    feats = xr.concat([scene[c].astype(np.float32) for c in channels], dim="channel")
    return feats.assign_coords(channel=channels).transpose("channel", "y", "x").rename("features")


def segment_years(scenes: xr.Dataset, model: Any, config: BatchConfig, geometry: Any | None = None
                  ) -> tuple[gpd.GeoDataFrame, dict[str, float]]:
    """Segment each time step of ``scenes`` (one per year) and polygonize the labels.

    Returns the polygons of every year (column ``year``) and ``{"area_km2_<year>": km²}``, the
    geodesic area of the polygons of all glacier classes of that year in the scenes' box.
    With the glacier's outline ``geometry`` (shapely, EPSG:4326) the polygons get a column
    ``touches_outline`` and the areas ``connected_area_km2_<year>``: the polygons that
    touch the outline, i.e. the glacier as mapped (also where it reaches beyond its outline)
    without the separate snow fields elsewhere in the box.
    """
    channels = [str(c) for c in model.channels]
    frames, areas = [], {}
    for k in range(scenes.sizes["time"]):
        scene = scenes.isel(time=k)
        year = int(pd.Timestamp(scene["time"].values).year)
        feats = _feature_scene(scene, channels)
        kw = {"tile": config.segment_tile, "overlap": config.segment_overlap}
        if feats is None:
            result = segment(scene.drop_vars("time"), model, dem=config.dem, **kw)
        else:
            result = segment(feats.drop_vars("time", errors="ignore"), model, **kw)
        polys = polygonize(result.label.compute(), min_area=config.min_area_m2 or None)
        polys.insert(0, "year", year)
        areas[f"area_km2_{year}"] = float(polys["area_m2"].sum()) / 1e6
        if geometry is not None:
            outline = gpd.GeoSeries([geometry], crs="EPSG:4326").to_crs(polys.crs).iloc[0]
            polys["touches_outline"] = polys.intersects(outline)
            touching = polys.loc[polys["touches_outline"], "area_m2"]
            areas[f"connected_area_km2_{year}"] = float(touching.sum()) / 1e6
        frames.append(polys)
    if not frames:
        crs = scenes.rio.crs
        columns = {"year": [], "class": [], "class_name": [], "area_m2": []}
        if geometry is not None:
            columns["touches_outline"] = np.array([], dtype=bool)
        empty = gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
        return empty, areas
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    return gdf, areas


def forecast_skill(series: xr.DataArray, model: Any, steps: int) -> tuple[float, str]:
    """MSE skill of the model against the better naive forecast, on the last ``steps`` composites.

    The model forecasts them from the composites before (never seeing them). The reference
    is whichever of persistence (the last input) and seasonal persistence (each target's
    season one year earlier, when the series has whole years and the history reaches back
    one) has the lower MSE, as :func:`xglacier.evaluate`'s ``reference="best"``: skill
    against persistence alone flatters any model on seasonal series. Returns
    ``(1 - MSE(model) / MSE(reference), reference name)`` over the pixels valid in all;
    NaN when the series is shorter than ``model.n_in + steps`` or the reference is exact.
    """
    nt = series.sizes["time"]
    if nt < int(model.n_in) + steps:
        return float("nan"), ""
    hist, truth = series.isel(time=slice(0, nt - steps)), series.isel(time=slice(nt - steps, None)).values
    pred = np.asarray(forecast(hist, model, steps=steps).values)
    h = hist.values
    refs = {"persistence": np.broadcast_to(h[-1:], truth.shape)}
    period = frames_per_year(series.time.values)
    if period is not None and period <= h.shape[0]:
        # lead k takes the history frame one period before it, as SeasonalPersistence
        refs["seasonal_persistence"] = h[[season_inputs(h.shape[0], period, k)[0] for k in range(steps)]]
    ok = np.isfinite(pred) & np.isfinite(truth)
    for ref in refs.values():
        ok &= np.isfinite(ref)
    if not ok.any():
        return float("nan"), ""
    mse = {name: float(np.mean((ref - truth)[ok] ** 2)) for name, ref in refs.items()}
    best = min(mse, key=mse.get)
    mse_model = float(np.mean((pred - truth)[ok] ** 2))
    return (1.0 - mse_model / mse[best] if mse[best] > 0 else float("nan")), best


def forecast_product(series: xr.DataArray, model: Any, steps: int) -> xr.DataArray:
    """The next ``steps`` composites forecast from the last ``model.n_in``, computed."""
    return forecast(series, model, steps=steps).compute()


def forecast_variable(ds: xr.Dataset, model: Any, where: str) -> xr.DataArray:
    """The variable of ``ds`` a forecast model works on: the one its checkpoint names, else ``ndsi``."""
    meta = getattr(model, "checkpoint_meta", {}) or {}
    name = meta.get("variable") or "ndsi"
    if name not in ds.data_vars:
        raise MissingBandError(f"{where}: the model forecasts variable {name!r}, which is not in the "
                               f"composites (variables: {sorted(map(str, ds.data_vars))})")
    return ds[name]


def write(obj: xr.Dataset | xr.DataArray, path: Path, where: str) -> Path:
    """Write a Dataset atomically by suffix: ``.zarr`` (replaced whole) or ``.nc``."""
    if path.suffix == ".zarr":
        return to_zarr(obj, path, mode="w")
    if path.suffix == ".nc":
        return to_netcdf(obj, path)
    raise InputError(f"{where}: output {path} has suffix {path.suffix!r}; expected .zarr or .nc")
