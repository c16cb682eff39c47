"""Masks: QA_PIXEL decoding, cloud masking and the paper's NDSI snow/ice mask."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr

from .._attrs import product, with_history
from .._validate import (
    check_bands,
    check_choice,
    check_flag,
    check_number,
    check_reflectance_band,
    check_spatial,
    get_band,
    is_reflectance_band,
)
from ..errors import DimensionError, InputError, ParameterError
from ..landsat import DEFAULT_MASK_FLAGS, QA_BAND, QA_BITS, QA_CONFIDENCE_BITS, flag_mask


def _check_qa(func: str, qa: xr.DataArray) -> None:
    if not np.issubdtype(qa.dtype, np.integer):
        raise InputError(
            f"{func}: quality band {qa.name!r} has dtype {qa.dtype}; expected unsigned integers "
            "(Landsat QA_PIXEL bit flags, not scaled)"
        )


def decode_qa(
    ds: xr.Dataset | xr.DataArray, flag: str, *, qa: str = QA_BAND
) -> xr.DataArray:
    """Decode one field of Landsat Collection 2 QA_PIXEL.

    Single-bit flags (``fill``, ``dilated_cloud``, ``cirrus``, ``cloud``, ``cloud_shadow``,
    ``snow``, ``clear``, ``water``) give a boolean array; two-bit confidences
    (``cloud_confidence``, ...) give 0-3 (none, low, medium, high).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> q = xr.DataArray(np.array([0b101000, 0b1000000], dtype="uint16"), name="qa_pixel")
    >>> decode_qa(q, "snow").values.tolist(), decode_qa(q, "cloud").values.tolist()
    ([True, False], [True, False])
    """
    flag = check_choice("decode_qa", "flag", flag, [*sorted(QA_BITS), *sorted(QA_CONFIDENCE_BITS)])
    band = ds if isinstance(ds, xr.DataArray) else get_band(ds, qa, role="quality band", func="decode_qa")
    _check_qa("decode_qa", band)
    if flag in QA_BITS:
        out = (band & (1 << QA_BITS[flag])) != 0
    else:
        out = ((band >> QA_CONFIDENCE_BITS[flag]) & 0b11).astype(np.uint8)
    out.attrs = {"long_name": f"QA_PIXEL {flag.replace('_', ' ')}"}
    return out.rename(flag)


def mask_clouds(
    ds: xr.Dataset,
    *,
    flags: Iterable[str] = DEFAULT_MASK_FLAGS,
    qa: str = QA_BAND,
    bands: Sequence[str] | None = None,
) -> xr.Dataset:
    """Set pixels flagged in QA_PIXEL to NaN in every reflectance band.

    Parameters
    ----------
    ds
        Scene cube with a ``qa_pixel`` variable (uint16 Landsat C2 bit flags).
    flags
        Flags that make a pixel unusable: any of ``fill``, ``dilated_cloud``, ``cirrus``,
        ``cloud``, ``cloud_shadow`` (the default: all five). ``snow`` and ``water``
        are refused, because masking them would delete the glacier signal.
    qa
        Name of the quality variable; it is kept unchanged in the output.
    bands
        Variables to mask; default every floating-point variable and every reflectance
        band. Reflectance bands (``blue`` ... ``swir22``) must be scaled reflectance:
        integer digital numbers cannot hold NaN and raise :class:`ReflectanceRangeError`
        at once (they would come back unmasked), float values outside the reflectance
        range at compute time for Dask input, as in :func:`ndsi`.

    Returns
    -------
    xarray.Dataset
        Same structure, masked pixels NaN; lazy for Dask input.

    Examples
    --------
    >>> import xglacier
    >>> cube, truth = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> clean = cube.glacier.mask_clouds()
    >>> bool(clean.green.isnull().sum() >= cube.green.isnull().sum())
    True
    """
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    forbidden = {"snow", "water", "clear"} & set(flags)
    if forbidden:
        raise ParameterError(
            f"mask_clouds: flags {sorted(forbidden)} describe the surface, not an obstruction; "
            f"expected flags among {sorted(DEFAULT_MASK_FLAGS)}"
        )
    bits = flag_mask(flags)
    qa_band = get_band(ds, qa, role="quality band", func="mask_clouds")
    _check_qa("mask_clouds", qa_band)
    floats = [n for n, v in ds.data_vars.items()
              if np.issubdtype(v.dtype, np.floating) or is_reflectance_band(v)]
    # a Dataset without float variables has nothing to mask, which is not an error
    names = check_bands("mask_clouds", ds, bands, default=floats) if bands is not None or floats else []
    bad = (qa_band & bits) != 0
    out = ds.copy()
    for name in names:
        band = ds[name]
        check_spatial(band, what=f"mask_clouds: variable {name!r}")
        band = check_reflectance_band("mask_clouds", band)
        if band.dims != qa_band.dims:
            raise DimensionError(
                f"mask_clouds: variable {name!r} has dimensions {band.dims} but {qa!r} has "
                f"{qa_band.dims}; expected the same"
            )
        out[name] = band.where(~bad)
        out[name].attrs = band.attrs
        out[name].encoding = band.encoding
    out.attrs = with_history(ds.attrs, "mask_clouds", flags=list(flags), qa=qa)
    return out


def snow_mask(
    ndsi: xr.DataArray,
    *,
    threshold: float | Sequence[float] = 0.3,
    keep_values: bool = True,
) -> xr.DataArray:
    """The paper's snow/ice mask: NDSI where NDSI >= ``threshold``, else 0.

    Parameters
    ----------
    ndsi
        NDSI DataArray (any dims), float; a reflectance band (``green`` ...) or integer
        data raises :class:`InputError`. Compute it with :func:`ndsi`, which refuses
        digital numbers.
    threshold
        Snow/ice threshold; a list gives one layer per threshold along a new
        ``threshold`` dimension.
    keep_values
        Keep the NDSI value on snow/ice pixels (the paper); ``False`` gives 1/0.

    Returns
    -------
    xarray.DataArray
        Float mask, NaN where NDSI is NaN.

    Examples
    --------
    >>> import xarray as xr
    >>> snow_mask(xr.DataArray([0.1, 0.5])).values.tolist()
    [0.0, 0.5]
    >>> snow_mask(xr.DataArray([0.1, 0.5]), keep_values=False).values.tolist()
    [0.0, 1.0]
    """
    if not isinstance(ndsi, xr.DataArray):
        raise InputError(f"snow_mask: expected an NDSI DataArray, got {type(ndsi).__name__}")
    # a band passed for its index would be thresholded as if reflectance were an NDSI
    if is_reflectance_band(ndsi) or not np.issubdtype(ndsi.dtype, np.floating):
        raise InputError(
            f"snow_mask: got variable {ndsi.name!r} of dtype {ndsi.dtype}; expected a float NDSI "
            "such as xglacier.ndsi(ds) gives (which refuses unscaled bands), not a band"
        )
    keep_values = check_flag("snow_mask", "keep_values", keep_values)
    many = np.ndim(threshold) > 0
    values = list(np.atleast_1d(np.asarray(threshold, dtype=object))) if many else [threshold]
    if not values:
        raise ParameterError(f"snow_mask: threshold={threshold!r}; expected at least one value")
    thr = np.array([check_number("snow_mask", "threshold", v, low=-1, high=1) for v in values], float)
    t = xr.DataArray(thr, dims="threshold", coords={"threshold": thr}) if many else float(thr[0])
    on = ndsi >= t
    value = ndsi if keep_values else xr.ones_like(ndsi)
    out = xr.where(on, value, 0.0, keep_attrs=False).where(ndsi.notnull())
    out = out.astype(ndsi.dtype)
    if many:
        out = out.transpose("threshold", *ndsi.dims)
    res = product(
        out, "snow_mask",
        "snow/ice NDSI" if keep_values else "snow/ice mask", "1", "snow_mask",
        history=ndsi.attrs.get("history"), threshold=thr.tolist(), keep_values=keep_values,
    )
    res.attrs["threshold"] = thr.tolist() if many else float(thr[0])
    return res
