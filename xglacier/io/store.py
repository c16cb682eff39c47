"""CF-clean NetCDF writing, atomic: a killed run never leaves a complete-looking file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from ..errors import InputError


def _clean_attrs(attrs: dict) -> dict:
    """Keep only attributes netCDF can store (str, numbers, lists of numbers)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, str | int | float | np.number):
            out[k] = v
        elif isinstance(v, list | tuple | np.ndarray) and len(v) and all(
            isinstance(e, int | float | np.number) and not isinstance(e, bool) for e in v
        ):
            out[k] = np.asarray(v)
    return out


def to_netcdf(obj: xr.Dataset | xr.DataArray, path: str | os.PathLike) -> Path:
    """Write ``obj`` to a NetCDF-4 file atomically (temporary file, then rename).

    Attributes that netCDF cannot hold are dropped, boolean coordinates are stored as
    bytes, variables are compressed, and the CF ``grid_mapping`` is kept.

    Examples
    --------
    >>> import xglacier, tempfile, pathlib
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "ndsi.nc"
    >>> to_netcdf(cube.glacier.ndsi(), out).exists()
    True
    """
    ds = obj.to_dataset() if isinstance(obj, xr.DataArray) else obj.copy()
    if isinstance(obj, xr.DataArray) and obj.name is None:
        raise InputError("to_netcdf: the DataArray has no name; set one with .rename('name')")
    ds.attrs = _clean_attrs(ds.attrs)
    grid_mapping = None
    if "spatial_ref" in ds.coords and {"x", "y"} <= set(ds.dims):
        # CF axis attributes on x/y are what GDAL needs to recover the geotransform
        ds = ds.rio.write_coordinate_system()
        grid_mapping = "spatial_ref"
    encoding = {}
    for name, var in ds.variables.items():
        var.attrs = _clean_attrs(var.attrs)
        if var.dtype == bool:
            ds[name] = var.astype("u1")
            ds[name].attrs.update(flag_values=np.array([0, 1], "u1"), flag_meanings="false true")
        if name in ds.data_vars and var.ndim >= 2:
            encoding[name] = {"zlib": True, "complevel": 4}
            gm = var.encoding.get("grid_mapping", grid_mapping if {"y", "x"} <= set(var.dims) else None)
            if gm:
                encoding[name]["grid_mapping"] = gm
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
