"""The ``.glacier`` accessor: a thin forwarder to xglacier's module-level functions.

``ds.glacier.fill_gaps(**kw)`` is exactly ``xglacier.fill_gaps(ds, **kw)``. The
accessor keeps no state (xarray makes a new one for every object).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import xarray as xr

from .forecasting.forecast import forecast
from .forecasting.patches import patches
from .io.store import to_netcdf, to_zarr
from .motion import flow, plot_flow
from .preprocess.align import align_ecc, apply_warps, estimate_ecc
from .preprocess.composite import composite
from .preprocess.gapfill import fill_gaps
from .preprocess.indices import ndsi, ndvi, ndwi
from .preprocess.masks import decode_qa, mask_clouds, snow_mask
from .preprocess.scenes import filter_scenes, missing_fraction
from .segmentation.classical import ndsi_rule
from .segmentation.features import features
from .segmentation.labels import polygonize
from .segmentation.segment import segment


def _forward(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def method(self: GlacierAccessor, *args: Any, **kwargs: Any) -> Any:
        return func(self._obj, *args, **kwargs)

    return method


@xr.register_dataset_accessor("glacier")
@xr.register_dataarray_accessor("glacier")
class GlacierAccessor:
    """Glacier-monitoring methods on :class:`xarray.Dataset` and :class:`xarray.DataArray`.

    Examples
    --------
    >>> import xglacier
    >>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
    >>> cube.glacier.ndsi().name
    'ndsi'
    """

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    ndsi = _forward(ndsi)
    ndwi = _forward(ndwi)
    ndvi = _forward(ndvi)
    decode_qa = _forward(decode_qa)
    mask_clouds = _forward(mask_clouds)
    snow_mask = _forward(snow_mask)
    missing_fraction = _forward(missing_fraction)
    filter_scenes = _forward(filter_scenes)
    fill_gaps = _forward(fill_gaps)
    composite = _forward(composite)
    align_ecc = _forward(align_ecc)
    estimate_ecc = _forward(estimate_ecc)
    apply_warps = _forward(apply_warps)
    flow = _forward(flow)
    plot_flow = _forward(plot_flow)
    patches = _forward(patches)
    forecast = _forward(forecast)
    features = _forward(features)
    polygonize = _forward(polygonize)
    segment = _forward(segment)
    ndsi_rule = _forward(ndsi_rule)
    to_netcdf = _forward(to_netcdf)
    to_zarr = _forward(to_zarr)
