"""Attribute conventions: CF names of derived products, provenance and georeferencing.

Every output of xglacier gets its ``history`` line from :func:`with_history` and its CRS
from :func:`georeference`; no module sets ``grid_mapping`` or ``spatial_ref`` by hand.
"""

from __future__ import annotations

import json
from typing import Any

import rioxarray  # noqa: F401  (the .rio accessor used by georeference)
import xarray as xr

from . import __version__

GRID_MAPPING = "spatial_ref"


def _plain(value: Any) -> Any:
    """Turn a parameter value into something netCDF and Zarr attributes can hold."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def provenance(op: str, **params: Any) -> str:
    """Return one CF ``history`` line recording an operation and its parameters."""
    args = json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True)
    return f"xglacier {__version__} {op} {args}"


def with_history(attrs: dict[str, Any], op: str, *, source: Any = None, **params: Any) -> dict[str, Any]:
    """Return a copy of ``attrs`` with a provenance line appended to ``history``.

    ``source`` (an xarray object or an attrs mapping) gives the history to carry forward
    when ``attrs`` are fresh ones.

    Examples
    --------
    >>> a = with_history({}, "ndsi", clip=True)
    >>> b = with_history({"units": "1"}, "composite", source=a, freq="3MS")
    >>> [line.split()[2] for line in b["history"].splitlines()], b["units"]
    (['ndsi', 'composite'], '1')
    """
    out = dict(attrs)
    if source is not None and not out.get("history"):
        carried = (source if isinstance(source, dict) else getattr(source, "attrs", {})).get("history")
        if carried:
            out["history"] = carried
    line = provenance(op, **params)
    out["history"] = f"{out['history']}\n{line}" if out.get("history") else line
    return out


def georeference(out: xr.DataArray | xr.Dataset, like: xr.DataArray | xr.Dataset | None, *,
                 crs: Any = None) -> xr.DataArray | xr.Dataset:
    """Give ``out`` the CRS of ``like``: its ``spatial_ref`` coordinate and ``grid_mapping``.

    ``crs`` (anything rioxarray accepts) is used when there is no ``like``. Only where
    there is a CRS: otherwise any ``grid_mapping`` encoding ``out`` holds
    is removed, so that no output points to a coordinate that is not there. The grid
    mapping is written through rioxarray (``ds.rio.crs`` works on every output).

    Examples
    --------
    >>> import numpy as np, rioxarray
    >>> src = xr.DataArray(np.zeros((2, 2)), dims=("y", "x"), coords={"y": [1.0, 0.0], "x": [0.0, 1.0]})
    >>> out = georeference(src * 2, src.rio.write_crs("EPSG:32643"))
    >>> str(out.rio.crs), out.encoding["grid_mapping"]
    ('EPSG:32643', 'spatial_ref')
    >>> "grid_mapping" in georeference(out, src).encoding
    False
    """
    if like is not None:
        crs = like.rio.crs
    if crs is None:
        if isinstance(out, xr.Dataset):
            for var in out.data_vars.values():
                var.encoding.pop("grid_mapping", None)
        else:
            out.encoding.pop("grid_mapping", None)
        return out
    if like is not None and GRID_MAPPING in like.coords:
        # the source's own coordinate keeps its exact WKT
        out = out.assign_coords({GRID_MAPPING: like.coords[GRID_MAPPING]})
        out = out.rio.write_grid_mapping(GRID_MAPPING)
    else:
        out = out.rio.write_crs(crs, grid_mapping_name=GRID_MAPPING)
    return _fresh_transform(out)


def _fresh_transform(out: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """Rewrite the GeoTransform from ``out``'s own coordinates.

    A copied ``spatial_ref`` keeps the transform of its source, which is wrong once the
    grid was sorted, flipped or cropped (``sortby("y")`` keeps it): GDAL would then place
    the data upside down or off the grid.
    """
    if "GeoTransform" not in out.coords[GRID_MAPPING].attrs:
        return out
    if not {"x", "y"} <= set(out.dims) or out.sizes["x"] < 2 or out.sizes["y"] < 2:
        # a transform cannot be read off fewer than two pixels: drop it rather than keep a stale one
        ref = out.coords[GRID_MAPPING].copy()
        ref.attrs = {k: v for k, v in ref.attrs.items() if k != "GeoTransform"}
        return out.assign_coords({GRID_MAPPING: ref})
    return out.rio.write_transform(out.rio.transform(recalc=True))


def product(
    da: xr.DataArray,
    name: str,
    long_name: str,
    units: str,
    op: str,
    history: str | None = None,
    **params: Any,
) -> xr.DataArray:
    """Name a derived single-band product and replace its attributes with fresh ones.

    Inherited attributes of the inputs (scale factors, band descriptions) would be
    wrong on a derived product, so they are dropped; ``history`` is carried forward.
    """
    attrs: dict[str, Any] = {"long_name": long_name, "units": units}
    if history:
        attrs["history"] = history
    attrs = with_history(attrs, op, **params)
    out = da.rename(name)
    out.attrs = attrs
    out.encoding = {}
    return georeference(out, da)
