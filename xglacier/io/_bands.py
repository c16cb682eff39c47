"""From raw digital numbers to the data model: scaling, nodata, quality bands.

Each band gets a :class:`ReadPlan`: the dtype the engine reads into and the value of
pixels without data. When every item declares the same 8- or 16-bit integer
``data_type`` and nodata, the band is read in that type (half the memory of float32)
and decoded through a lookup table of ``2**bits`` float32 values computed in float64
(``DN * scale + offset``, NaN at nodata): one gather per pixel, and exactly the values
that scaling each pixel in float64 would give. Otherwise the band is read as float32
(exact for 16-bit data, NaN where there is no data) and scaled per pixel in float64.
Quality bands (``qa*``) are kept as unscaled integers.

>>> table = lut(np.dtype("uint16"), 0.0000275, -0.2, 0)
>>> round(float(table[10000]), 6), bool(np.isnan(table[0]))
(0.075, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as dsa
import numpy as np

from ..landsat import QA_BAND
from ._items import AssetInfo

_LUT_TYPES = ("uint8", "int8", "uint16", "int16")


@dataclass(frozen=True)
class ReadPlan:
    """How an engine reads one band: into ``dtype``, with ``fill`` where there is no data."""

    dtype: str
    fill: float
    table: bool  # float band decoded through a lookup table


def _fits(value: float | None, dtype: str) -> bool:
    if value is None or not float(value).is_integer():
        return False
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def plan(band: str, assets: Sequence[AssetInfo]) -> ReadPlan:
    """The read plan of ``band`` over every item (see the module docstring)."""
    declared = {a.data_type for a in assets}
    nodata = {a.nodata for a in assets}
    one_type = declared.pop() if len(declared) == 1 else None
    one_nodata = nodata.pop() if len(nodata) == 1 else None
    if assets[0].integer:
        if one_type is not None and np.issubdtype(np.dtype(one_type), np.integer):
            default = 1.0 if band == QA_BAND else 0.0
            return ReadPlan(one_type, one_nodata if _fits(one_nodata, one_type) else default, False)
        return ReadPlan("float32", np.nan, False)
    if one_type in _LUT_TYPES and _fits(one_nodata, one_type):
        return ReadPlan(one_type, float(one_nodata), True)  # type: ignore[arg-type]
    return ReadPlan("float32", np.nan, False)


def lut(dtype: np.dtype, scale: float, offset: float, nodata: float | None) -> np.ndarray:
    """float32 value of every DN of an 8/16-bit type, indexed by its unsigned bit pattern."""
    bits = np.dtype(f"uint{dtype.itemsize * 8}")
    dn = np.arange(np.iinfo(bits).max + 1, dtype=bits).view(dtype)
    table = (dn.astype(np.float64) * scale + offset).astype(np.float32)
    if nodata is not None:
        table[dn == nodata] = np.nan
    return table


def _lut_block(raw: np.ndarray, index: np.ndarray, tables: np.ndarray) -> np.ndarray:
    view = raw.view(f"uint{raw.dtype.itemsize * 8}")
    first = int(index.flat[0]) if index.size else 0
    if index.size == 0 or (index == first).all():
        return tables[first][view]
    out = np.empty(raw.shape, np.float32)
    for t in range(raw.shape[0]):
        out[t] = tables[int(index[t, 0, 0])][view[t]]
    return out


def _scale_block(raw: np.ndarray, scale: np.ndarray, offset: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """DN -> physical value in float64, then float32; NaN where nodata or missing."""
    out = np.multiply(raw, scale, dtype=np.float64)
    out += offset
    out[np.isnan(raw) | (raw == nodata)] = np.nan
    return out.astype(np.float32)


def _integer_block(raw: np.ndarray, fill: float, dtype: str) -> np.ndarray:
    return np.where(np.isnan(raw), fill, raw).astype(dtype)


def _per_time(values: Sequence[float], like: dsa.Array, dtype: type = np.float64) -> dsa.Array:
    arr = np.asarray(values, dtype=dtype).reshape(-1, 1, 1)
    return dsa.from_array(arr, chunks=(like.chunks[0], 1, 1))


def decode(raw: dsa.Array, read: ReadPlan, assets: Sequence[AssetInfo]) -> dsa.Array:
    """The band in the data model: float32 scaled with NaN, or unscaled integers."""
    if assets[0].integer:
        if read.dtype != "float32":
            return raw  # read in its own type, filled with nodata: nothing to do
        dtype = np.result_type(*[np.dtype(a.dtype) for a in assets]).name
        fills = {a.nodata for a in assets}
        fill = fills.pop() if len(fills) == 1 and None not in fills else read.fill
        return raw.map_blocks(_integer_block, 1 if np.isnan(fill) else fill, dtype, dtype=dtype)
    if read.table:
        keys = [(a.scale, a.offset, a.nodata) for a in assets]
        distinct = list(dict.fromkeys(keys))
        tables = np.stack([lut(np.dtype(read.dtype), *k) for k in distinct])
        index = _per_time([distinct.index(k) for k in keys], raw, np.int32)
        return dsa.map_blocks(_lut_block, raw, index, tables, dtype=np.float32)
    nodata = [np.nan if a.nodata is None else a.nodata for a in assets]
    return dsa.map_blocks(
        _scale_block, raw, _per_time([a.scale for a in assets], raw),
        _per_time([a.offset for a in assets], raw), _per_time(nodata, raw), dtype=np.float32,
    )
