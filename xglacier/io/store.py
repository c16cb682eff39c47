"""CF-clean NetCDF and Zarr writers, atomic: a killed run never leaves a complete-looking store.

Both writers give every variable CF attributes (``units``, ``long_name``,
``standard_name`` where one exists, ``grid_mapping``), a ``_FillValue`` (NaN for floats,
none for integer flags, so ``qa_pixel`` stays integer), chunking that follows the Dask
chunks (else one scene by up to 512x512 pixels) with compression, and an exact integer time
encoding. They write into a hidden temporary path in the destination folder,
``.<stem>.<random>.part<suffix>`` (see :mod:`xglacier._atomic`), and rename it to the
final path only when it is complete:

- a new store appears at once, or not at all;
- replacing a store (``mode="w"``) swaps the directories atomically (Linux
  ``renameat2(RENAME_EXCHANGE)``; elsewhere the old store is moved aside and the new
  one renamed in its place), then deletes the old one;
- appending (:func:`to_zarr` with ``append_dim``) works on a hard-linked clone of the
  store (cheap: Zarr rewrites files by renaming, so the original is never touched) and
  swaps it in the same way; the grid, variables and CRS must match the store.

A run killed mid-write leaves ``.<stem>.*.part<suffix>`` entries beside the final path: they are
never mistaken for a store and can be deleted.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from .._atomic import atomic_path
from .._validate import check_int
from ..errors import InputError, ParameterError, StoreError
from ..landsat import REFLECTANCE_BANDS

#: CF standard names of variables xglacier writes, where the CF table has one.
STANDARD_NAMES: dict[str, str] = {
    **dict.fromkeys(REFLECTANCE_BANDS, "surface_bidirectional_reflectance"),
    "dem": "surface_altitude",
    "elevation": "surface_altitude",
}

#: Largest spatial chunk written when the data does not say (NumPy-backed input).
SPATIAL_CHUNK = 512

#: Zarr format of new stores: v2 is what the widest set of tools reads (GDAL >= 3.4;
#: the v3 stores zarr-python 3 writes need GDAL >= 3.11).
DEFAULT_ZARR_FORMAT = 2


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


def _time_units(values: np.ndarray) -> str:
    """The coarsest of s, ms, us, ns that holds every timestamp exactly (us at least)."""
    ns = pd.DatetimeIndex(values.ravel()).as_unit("ns").asi8
    unit = "microseconds" if not len(ns) or (ns % 1000 == 0).all() else "nanoseconds"
    return f"{unit} since 1970-01-01T00:00:00"


def _chunks_for(var: xr.Variable) -> tuple[int, ...]:
    """Chunk shape: the Dask chunks when regular, else one scene by SPATIAL_CHUNK pixels."""
    if isinstance(var.data, dsa.Array):
        first = tuple(c[0] for c in var.data.chunks)
        regular = all(all(x == c[0] for x in c[:-1]) and c[-1] <= c[0] for c in var.data.chunks)
        if regular:
            return first
    out = []
    for i, (dim, n) in enumerate(zip(var.dims, var.shape, strict=True)):
        if dim in ("y", "x"):
            out.append(min(n, SPATIAL_CHUNK))
        else:  # one scene (or one step of the leading dimension) per chunk
            out.append(1 if i == 0 and var.ndim >= 3 else n)
    return tuple(out)


def _strings(var: xr.Variable, name: Hashable) -> xr.Variable:
    """Object coordinates: variable-length strings if every value is a string, else an error."""
    if var.dtype.kind == "U":
        return var.astype(object)
    if var.dtype == object:
        values = var.values  # small metadata: loaded here rather than guessed by xarray
        if all(isinstance(v, str) for v in values.ravel()):
            return var.copy(data=values)
        bad = next(v for v in values.ravel() if not isinstance(v, str))
        raise StoreError(
            f"coordinate {name!r} holds {type(bad).__name__} values, which netCDF and Zarr cannot "
            "store; drop it or convert it to strings or numbers"
        )
    return var


def prepare(obj: xr.Dataset | xr.DataArray, func: str = "to_netcdf") -> xr.Dataset:
    """A copy of ``obj`` ready to write: clean attributes, CF names, strings, no booleans.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> ds = prepare(cube)
    >>> ds.green.attrs["standard_name"], ds.x.attrs["standard_name"], ds.green.encoding["grid_mapping"]
    ('surface_bidirectional_reflectance', 'projection_x_coordinate', 'spatial_ref')
    """
    if isinstance(obj, xr.DataArray):
        if obj.name is None:
            raise InputError(f"{func}: the DataArray has no name; set one with .rename('name')")
        ds = obj.to_dataset()
    elif isinstance(obj, xr.Dataset):
        ds = obj.copy()
    else:
        raise InputError(f"{func}: expected an xarray Dataset or DataArray, got {type(obj).__name__}")
    ds.attrs = _clean_attrs(ds.attrs)
    ds.attrs.setdefault("Conventions", "CF-1.8")
    georef = "spatial_ref" in ds.coords and {"x", "y"} <= set(ds.dims)
    if georef:
        # CF axis attributes on x/y are what GDAL needs to recover the geotransform
        ds = ds.rio.write_coordinate_system()
    for name in list(ds.variables):
        var = ds.variables[name].copy(deep=False)
        var.attrs = _clean_attrs(var.attrs)
        grid_mapping = var.encoding.get("grid_mapping")
        var.encoding = {}
        if var.dtype == bool:
            var = var.astype("u1")
            var.attrs.update(flag_values=np.array([0, 1], "u1"), flag_meanings="false true")
        if name in ds.coords:
            var = _strings(var, name)
        if var.dtype.kind == "M" and name == "time":
            var.attrs.setdefault("standard_name", "time")
            var.attrs.setdefault("axis", "T")
        if name in ds.data_vars:
            if georef and {"y", "x"} <= set(var.dims):
                grid_mapping = grid_mapping or "spatial_ref"
            if grid_mapping:
                var.encoding["grid_mapping"] = grid_mapping
            if name in STANDARD_NAMES and var.dtype.kind == "f":
                var.attrs.setdefault("standard_name", STANDARD_NAMES[str(name)])
                var.attrs.setdefault("units", "1" if name in REFLECTANCE_BANDS else "m")
            var.attrs.setdefault("long_name", str(name))
            # read by xarray before the encodings passed to the backend replace the rest
            var.encoding["coordinates"] = _coordinates(ds, var)
        ds[name] = var
    return ds


def _coordinates(ds: xr.Dataset, var: xr.Variable) -> str:
    """The CF ``coordinates`` of a variable, with ``spatial_ref`` listed too, so that a plain
    ``xr.open_dataset``/``xr.open_zarr`` restores it as a coordinate and ``.rio.crs`` works."""
    names = [str(c) for c in ds.coords if c not in ds.dims and set(ds[c].dims) <= set(var.dims)]
    return " ".join(sorted(names))


def _encoding(ds: xr.Dataset, kind: str) -> dict[Hashable, dict[str, Any]]:
    enc: dict[Hashable, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        e: dict[str, Any] = {}
        if var.dtype.kind == "M":
            e.update(units=_time_units(var.values), calendar="proleptic_gregorian", dtype="int64")
        elif name in ds.data_vars:
            e["_FillValue"] = np.array(np.nan, var.dtype) if var.dtype.kind == "f" else None
            if var.encoding.get("grid_mapping"):  # passed encodings replace the variable's own
                e["grid_mapping"] = var.encoding["grid_mapping"]
            if var.ndim >= 2:
                chunks = _chunks_for(var)
                if kind == "netcdf":
                    e.update(zlib=True, complevel=4, shuffle=True, chunksizes=chunks)
                else:
                    e["chunks"] = chunks
        if e:
            enc[name] = e
    return enc


def _rechunk(ds: xr.Dataset, enc: dict[Hashable, dict[str, Any]]) -> xr.Dataset:
    """Dask chunks that match the Zarr chunks exactly (xarray refuses overlapping ones)."""
    for name, e in enc.items():
        var = ds.variables[name]
        if "chunks" in e and isinstance(var.data, dsa.Array):
            ds[name] = var.chunk(dict(zip(var.dims, e["chunks"], strict=True)))
    return ds


def _clone(src: Path, dst: Path) -> None:
    """Copy a Zarr directory with hard links (falls back to copying the bytes)."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)


#: Serialises NetCDF writes within a process (see :func:`to_netcdf`); re-entrant.
_NETCDF_WRITE = threading.RLock()


def to_netcdf(obj: xr.Dataset | xr.DataArray, path: str | os.PathLike) -> Path:
    """Write ``obj`` to a NetCDF-4 file atomically (temporary file, then rename).

    Attributes that netCDF cannot hold are dropped, boolean variables are stored as
    bytes, CF attributes and the ``grid_mapping`` are written (GDAL reads the
    geotransform back), variables are chunked like their Dask data (else one scene by
    up to 512x512 pixels) and compressed (zlib 4), and times are exact integers. An
    existing file is replaced atomically. Writes are serialised within a process (the HDF5
    library under netCDF4 is not thread-safe); reading NetCDF files in another thread while
    one is written is not.

    Examples
    --------
    >>> import xglacier, tempfile, pathlib
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "ndsi.nc"
    >>> to_netcdf(cube.glacier.ndsi(), out).exists()
    True
    """
    ds = prepare(obj, "to_netcdf")
    encoding = _encoding(ds, "netcdf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The HDF5 library under netCDF4 is not thread-safe: two threads of one process writing
    # files at once crash it (a segfault, e.g. a Dask worker with several threads). Writes
    # are serialised process-wide; the chunks of a Dask-backed dataset are still computed by
    # its scheduler while the lock is held (xarray guards their writes with its own lock).
    with _NETCDF_WRITE, atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    return path


def _describe(values: np.ndarray) -> str:
    return f"{len(values)} values from {values[0]} to {values[-1]}" if len(values) else "no values"


def check_append(store: xr.Dataset, new: xr.Dataset, dim: str, path: Path) -> None:
    """Raise :class:`StoreError` unless ``new`` can extend ``store`` along ``dim``."""
    where = f"to_zarr: cannot append to {path}"
    if dim not in new.dims or dim not in store.dims:
        raise StoreError(f"{where}: dimension {dim!r} is missing (store {tuple(store.dims)}, "
                         f"new data {tuple(new.dims)})")
    if set(store.data_vars) != set(new.data_vars):
        missing, extra = set(store.data_vars) - set(new.data_vars), set(new.data_vars) - set(store.data_vars)
        raise StoreError(f"{where}: variables differ: missing {sorted(map(str, missing))}, "
                         f"not in the store {sorted(map(str, extra))}")
    for name in store.data_vars:
        a, b = store[name], new[name]
        if a.dims != b.dims or a.dtype != b.dtype:
            raise StoreError(f"{where}: variable {name!r} is {a.dims} {a.dtype} in the store, "
                             f"{b.dims} {b.dtype} in the new data")
    along = {n for n, c in store.coords.items() if dim in c.dims and n != dim}
    new_along = {n for n, c in new.coords.items() if dim in c.dims and n != dim}
    if along != new_along:
        raise StoreError(f"{where}: coordinates along {dim!r} differ: store {sorted(map(str, along))}, "
                         f"new data {sorted(map(str, new_along))}")
    for d in set(store.dims) - {dim}:
        old = store[d].values if d in store.coords else np.arange(store.sizes[d])
        cur = new[d].values if d in new.coords else np.arange(new.sizes.get(d, -1))
        if d not in new.dims or old.shape != cur.shape or not np.array_equal(old, cur):
            raise StoreError(f"{where}: the grid differs along {d!r}: store has {_describe(old)}, "
                             f"new data {_describe(cur)}")
    if ("spatial_ref" in store.coords) != ("spatial_ref" in new.coords):
        raise StoreError(f"{where}: one of the store and the new data has no CRS (spatial_ref)")
    if "spatial_ref" in store.coords and store.rio.crs != new.rio.crs:
        raise StoreError(f"{where}: CRS differs: store {store.rio.crs}, new data {new.rio.crs}")
    last, first = store[dim].values[-1:], new[dim].values[:1]
    if len(last) and len(first) and not first[0] > last[0]:
        raise StoreError(f"{where}: new {dim!r} values start at {first[0]}, not after the store's "
                         f"last value {last[0]}; only new steps can be appended")


def to_zarr(
    obj: xr.Dataset | xr.DataArray,
    path: str | os.PathLike,
    *,
    mode: str | None = None,
    append_dim: str | None = None,
    zarr_format: int | None = None,
) -> Path:
    """Write ``obj`` to a Zarr store atomically, or append new steps along ``append_dim``.

    Parameters
    ----------
    obj
        Dataset, or named DataArray.
    path
        Store directory.
    mode
        ``"w-"`` (default without ``append_dim``): create, fail if the store exists;
        ``"w"``: create or replace; ``"a"`` (default with ``append_dim``): append along
        ``append_dim``, creating the store if it does not exist.
    append_dim
        Dimension to append along, normally ``"time"``. The store's variables, their
        dims and dtypes, every other coordinate (the grid), the coordinates along
        ``append_dim`` and the CRS must match; new steps must follow the stored ones.
    zarr_format
        2 or 3. Default: 2 for a new store, which GDAL (3.4 and later) and zarr-python 2
        and 3 read; Zarr v3 as zarr-python 3 writes it needs GDAL 3.11 or later
        (``docs/io.md``). An append keeps the store's format; asking for the other one
        raises :class:`StoreError`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    StoreError
        The store exists (``mode="w-"``), or does not match the appended data or
        ``zarr_format``.

    Examples
    --------
    >>> import xglacier, tempfile, pathlib
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "cube.zarr"
    >>> _ = to_zarr(cube.isel(time=slice(0, 2)), out)
    >>> _ = to_zarr(cube.isel(time=slice(2, None)), out, append_dim="time")
    >>> xr.open_zarr(out).sizes["time"] == cube.sizes["time"]
    True
    >>> store_format(out)
    2
    """
    if mode is None:
        mode = "a" if append_dim else "w-"
    if mode not in ("w-", "w", "a"):
        raise ParameterError(f"to_zarr: mode={mode!r}; expected 'w-', 'w' or 'a'")
    if mode == "a" and not append_dim:
        raise ParameterError("to_zarr: mode='a' needs append_dim (e.g. append_dim='time')")
    if append_dim and mode != "a":
        raise ParameterError(f"to_zarr: append_dim={append_dim!r} needs mode='a', got mode={mode!r}")
    check_int("to_zarr", "zarr_format", zarr_format, low=2, high=3, allow_none=True)
    ds = prepare(obj, "to_zarr")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "w-" and path.exists():
        raise StoreError(f"to_zarr: {path} exists; pass mode='w' to replace it or append_dim= to append")
    appending = mode == "a" and path.exists()
    fmt = store_format(path) if appending else (zarr_format or DEFAULT_ZARR_FORMAT)
    if zarr_format is not None and zarr_format != fmt:
        raise StoreError(f"to_zarr: {path} is a Zarr v{fmt} store; an append keeps its format, so "
                         f"zarr_format={zarr_format} cannot be used (leave it out, or write a new store)")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # consolidated metadata makes opening fast; zarr notes it is not in the v3 spec yet
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        if appending:
            with xr.open_zarr(path) as store:
                check_append(store, ds, str(append_dim), path)
                chunks = {n: store[n].encoding.get("chunks") for n in store.data_vars}
            for n, c in chunks.items():
                if c and isinstance(ds[n].data, dsa.Array):
                    ds[n] = ds[n].chunk(dict(zip(ds[n].dims, c, strict=True)))
            _clone(path, tmp)
            ds.to_zarr(tmp, mode="a", append_dim=append_dim, consolidated=True, zarr_format=fmt)
        else:
            enc = _encoding(ds, "zarr")
            _rechunk(ds, enc).to_zarr(tmp, mode="w-", encoding=enc, consolidated=True, zarr_format=fmt)
    return path


def store_format(path: str | os.PathLike) -> int:
    """The Zarr format (2 or 3) of the store at ``path``; :class:`StoreError` if it is not one."""
    path = Path(path)
    if (path / "zarr.json").is_file():
        return 3
    if (path / ".zgroup").is_file() or (path / ".zmetadata").is_file():
        return 2
    raise StoreError(f"to_zarr: {path} exists but is not a Zarr store (no zarr.json, .zgroup or .zmetadata)")
