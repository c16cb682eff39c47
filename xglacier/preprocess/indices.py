"""Normalized-difference spectral indices: NDSI, NDWI (Gao, McFeeters), NDVI.

All are element-wise, hence lazy and chunk-invariant on Dask-backed cubes.
"""

from __future__ import annotations

from typing import Literal

import xarray as xr

from .._attrs import product
from .._validate import check_choice, check_flag, check_reflectance, check_spatial, get_band
from ..errors import DimensionError


def normalized_difference(a: xr.DataArray, b: xr.DataArray, *, clip: bool = True) -> xr.DataArray:
    """Return ``(a - b) / (a + b)``, NaN where the denominator is 0 or an input is NaN.

    Computed in the inputs' float precision; no warnings for a zero denominator.
    Surface reflectance can be slightly negative (atmospheric correction over dark
    water or shadow), which pushes the ratio outside [-1, 1]; ``clip=True`` bounds it.

    Examples
    --------
    >>> import xarray as xr
    >>> float(normalized_difference(xr.DataArray(0.75), xr.DataArray(0.25)))
    0.5
    """
    clip = check_flag("normalized_difference", "clip", clip)
    den = a + b
    # Masking the denominator first avoids division-by-zero warnings and infinities.
    out = (a - b) / den.where(den != 0)
    return out.clip(-1, 1) if clip else out


def _index(
    ds: xr.Dataset, first: str, second: str, name: str, long_name: str, op: str, **params
) -> xr.DataArray:
    clip = check_flag(op, "clip", params.pop("clip"))
    a = check_reflectance(get_band(ds, first, func=op), func=op)
    b = check_reflectance(get_band(ds, second, func=op), func=op)
    for band in (a, b):
        check_spatial(band)
    if a.dims != b.dims:
        raise DimensionError(
            f"{op}: bands {first!r} {a.dims} and {second!r} {b.dims} have different dimensions; "
            "expected the same"
        )
    out = normalized_difference(a, b, clip=clip)
    return product(
        out, name, long_name, "1", op, history=ds.attrs.get("history"), clip=clip, **params
    )


def ndsi(
    ds: xr.Dataset, *, green: str = "green", swir: str = "swir16", clip: bool = True
) -> xr.DataArray:
    """Normalized Difference Snow Index, ``(green - swir) / (green + swir)``.

    Snow and ice reflect strongly in the green and absorb in the shortwave infrared,
    so NDSI >= 0.3 is the usual snow/ice criterion (see :func:`snow_mask`).

    Parameters
    ----------
    ds
        Scene cube with reflectance bands.
    green, swir
        Names of the green and SWIR-1 variables.
    clip
        Bound the index to [-1, 1] (negative reflectances can push it outside).

    Returns
    -------
    xarray.DataArray
        Named ``ndsi``, values in [-1, 1], NaN where an input is NaN or the sum is 0.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> cube.glacier.ndsi().name
    'ndsi'
    """
    return _index(
        ds, green, swir, "ndsi", "normalized difference snow index", "ndsi",
        green=green, swir=swir, clip=clip,
    )


def ndwi(
    ds: xr.Dataset,
    *,
    kind: Literal["gao", "mcfeeters"] = "gao",
    green: str = "green",
    nir: str = "nir08",
    swir: str = "swir16",
    clip: bool = True,
) -> xr.DataArray:
    """Normalized Difference Water Index.

    ``kind="gao"`` is Gao's (1996) vegetation-water index ``(nir - swir) / (nir + swir)``;
    ``kind="mcfeeters"`` is McFeeters' (1996) open-water index ``(green - nir) / (green + nir)``.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> cube.glacier.ndwi(kind="mcfeeters").attrs["long_name"]
    'normalized difference water index (McFeeters)'
    """
    kind = check_choice("ndwi", "kind", kind, ("gao", "mcfeeters"))
    if kind == "gao":
        return _index(
            ds, nir, swir, "ndwi", "normalized difference water index (Gao)", "ndwi",
            kind=kind, nir=nir, swir=swir, clip=clip,
        )
    return _index(
        ds, green, nir, "ndwi", "normalized difference water index (McFeeters)", "ndwi",
        kind=kind, green=green, nir=nir, clip=clip,
    )


def ndvi(
    ds: xr.Dataset, *, nir: str = "nir08", red: str = "red", clip: bool = True
) -> xr.DataArray:
    """Normalized Difference Vegetation Index, ``(nir - red) / (nir + red)``.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> cube.glacier.ndvi().attrs["units"]
    '1'
    """
    return _index(
        ds, nir, red, "ndvi", "normalized difference vegetation index", "ndvi",
        nir=nir, red=red, clip=clip,
    )
