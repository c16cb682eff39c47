"""Attribute conventions: CF names for derived products and parameter provenance."""

from __future__ import annotations

import json
from typing import Any

import xarray as xr

from . import __version__


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


def with_history(attrs: dict[str, Any], op: str, **params: Any) -> dict[str, Any]:
    """Return a copy of ``attrs`` with a provenance line appended to ``history``."""
    out = dict(attrs)
    line = provenance(op, **params)
    out["history"] = f"{out['history']}\n{line}" if out.get("history") else line
    return out


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
    out.encoding = {k: v for k, v in da.encoding.items() if k == "grid_mapping"}
    return out
