"""Scene selection by cloud-cover metadata and missing-pixel fraction."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np
import xarray as xr

from .._attrs import with_history
from .._validate import check_bands, check_number, check_reflectance_band, check_spatial, check_time
from ..errors import InputError, MetadataError
from ..landsat import REFLECTANCE_BANDS

#: Coordinate names that may hold the scene cloud percentage, in order of preference.
CLOUD_COORDS: tuple[str, ...] = ("cloud_cover", "eo:cloud_cover")


def missing_fraction(ds: xr.Dataset, *, bands: Sequence[str] | None = None) -> xr.DataArray:
    """Fraction of pixels per scene where any of ``bands`` is NaN (lazy for Dask input).

    ``bands`` (one name or several) default to the reflectance bands present. Returns a
    DataArray along every dimension but ``y`` and ``x`` (``time`` for a cube). Missing
    means NaN, so reflectance bands must be scaled with nodata as NaN: integer digital
    numbers raise :class:`ReflectanceRangeError` at once (their nodata, -9999 or 0, would
    count as valid), float values outside the reflectance range when computed.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> frac = missing_fraction(cube)
    >>> bool(((frac >= 0) & (frac <= 1)).all())
    True
    """
    return _missing("missing_fraction", ds, bands)


def _missing(func: str, ds: xr.Dataset, bands: Sequence[str] | None) -> xr.DataArray:
    default = [b for b in REFLECTANCE_BANDS if b in getattr(ds, "data_vars", ())]
    if bands is None and isinstance(ds, xr.Dataset) and not default:
        raise InputError(
            f"{func}: none of the reflectance bands {list(REFLECTANCE_BANDS)} "
            f"is in the Dataset (variables: {sorted(map(str, ds.data_vars))}); name them "
            "with bands=[...]"
        )
    names = check_bands(func, ds, bands, default=default)
    missing = None
    for name in names:
        check_spatial(ds[name], what=f"{func}: variable {name!r}")
        m = check_reflectance_band(func, ds[name]).isnull()
        missing = m if missing is None else (missing | m)
    frac = missing.mean(dim=("y", "x"))
    frac.attrs = {"long_name": "fraction of missing pixels", "units": "1"}
    return frac.rename("missing_fraction")


def _cloud_cover(ds: xr.Dataset, coord: str | None) -> xr.DataArray:
    names = (coord,) if coord else CLOUD_COORDS
    for name in names:
        if name in ds.coords:
            cc = ds.coords[name]
            if cc.dims != ("time",) or not np.issubdtype(cc.dtype, np.number):
                raise MetadataError(
                    f"filter_scenes: coordinate {name!r} has dims {cc.dims} and dtype "
                    f"{cc.dtype}; expected a numeric percentage along 'time'"
                )
            return cc
    raise MetadataError(
        f"filter_scenes: no scene cloud-cover coordinate (looked for {list(names)}); "
        "pass max_cloud=None to filter on missing pixels only"
    )


def filter_scenes(
    ds: xr.Dataset,
    *,
    max_cloud: float | None = 20,
    max_missing: float | None = 0.5,
    bands: Sequence[str] | None = None,
    cloud_coord: str | None = None,
) -> xr.Dataset:
    """Drop scenes that are too cloudy (scene metadata) or have too many missing pixels.

    The paper keeps Landsat scenes with less than 20 % cloud cover and less than 50 %
    missing pixels. Only the per-scene missing-fraction vector is computed (a small
    reduction); the returned Dataset stays lazy.

    Parameters
    ----------
    ds
        Scene cube with a ``time`` dimension.
    max_cloud
        Largest scene cloud cover in percent (from ``cloud_coord``); ``None`` skips it.
    max_missing
        Largest fraction of missing pixels over ``bands`` (a pixel is missing when any
        of them is NaN); ``None`` skips it.
    bands
        Bands that decide missingness; default the reflectance bands present, which must
        be scaled reflectance with nodata as NaN (see :func:`missing_fraction`).
    cloud_coord
        Coordinate with the cloud percentage; default ``cloud_cover`` or ``eo:cloud_cover``.

    Returns
    -------
    xarray.Dataset
        The kept scenes; ``attrs["scenes_dropped"]`` counts the dropped ones.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-06-01")
    >>> kept = cube.glacier.filter_scenes(max_cloud=20)
    >>> bool((kept.cloud_cover <= 20).all())
    True
    """
    if not isinstance(ds, xr.Dataset):
        raise InputError(f"filter_scenes: expected a Dataset, got {type(ds).__name__}")
    check_time(ds)
    max_cloud = check_number("filter_scenes", "max_cloud", max_cloud, low=0, high=100, allow_none=True)
    max_missing = check_number("filter_scenes", "max_missing", max_missing, low=0, high=1, allow_none=True)
    keep = np.ones(ds.sizes["time"], dtype=bool)
    if max_cloud is not None:
        keep &= np.asarray(_cloud_cover(ds, cloud_coord).values) <= max_cloud
    if max_missing is not None:
        frac = _missing("filter_scenes", ds, bands).data
        (frac,) = dask.compute(frac)  # the one small computation this function does
        keep &= np.asarray(frac) <= max_missing
    out = ds.isel(time=np.flatnonzero(keep))
    out.attrs = with_history(
        ds.attrs, "filter_scenes", max_cloud=max_cloud, max_missing=max_missing,
        bands=bands,
    )
    out.attrs["scenes_dropped"] = int((~keep).sum())
    return out
