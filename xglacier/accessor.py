"""The ``.glacier`` accessors: thin forwarders to xglacier's module-level functions.

``ds.glacier.fill_gaps(**kw)`` is exactly ``xglacier.fill_gaps(ds, **kw)``, with the same
docstring and the same signature minus the data argument. As in odc-geo, Datasets and
DataArrays get separate accessor classes, each offering exactly the methods that work on
it: band maths and scene selection need a Dataset of bands, while flow, forecasting and
polygons work on one DataArray. The accessors keep no state (xarray makes a new one for
every object).

>>> import xglacier
>>> cube, _ = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
>>> hasattr(cube.glacier, "ndsi"), hasattr(cube.green.glacier, "ndsi")
(True, False)
"""

from __future__ import annotations

import functools
import inspect
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
from .segmentation.segment import segment
from .segmentation.vectors import polygonize

#: Functions that take a Dataset of bands (or a velocity Dataset, for ``plot_flow``).
DATASET_METHODS: tuple[Callable[..., Any], ...] = (
    ndsi, ndwi, ndvi, mask_clouds, missing_fraction, filter_scenes, features, plot_flow,
)
#: Functions that take one DataArray.
DATAARRAY_METHODS: tuple[Callable[..., Any], ...] = (
    snow_mask, flow, patches, forecast, polygonize, ndsi_rule,
)
#: Functions that take either.
SHARED_METHODS: tuple[Callable[..., Any], ...] = (
    decode_qa, fill_gaps, composite, align_ecc, estimate_ecc, apply_warps, segment, to_netcdf, to_zarr,
)


def _forward(func: Callable[..., Any]) -> Callable[..., Any]:
    """A method calling ``func(self._obj, ...)``, with ``func``'s name, docstring and options."""

    @functools.wraps(func)
    def method(self: GlacierAccessor, *args: Any, **kwargs: Any) -> Any:
        return func(self._obj, *args, **kwargs)

    params = list(inspect.signature(func).parameters.values())
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    # the data argument is the accessor's object: drop it from what help() shows
    method.__signature__ = inspect.signature(func).replace(parameters=[self_param, *params[1:]])
    del method.__wrapped__
    return method


class GlacierAccessor:
    """What both ``.glacier`` accessors share: the wrapped object and the shared methods."""

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj


def _install(cls: type, funcs: tuple[Callable[..., Any], ...]) -> None:
    for func in funcs:
        setattr(cls, func.__name__, _forward(func))


@xr.register_dataset_accessor("glacier")
class DatasetGlacier(GlacierAccessor):
    """Glacier-monitoring methods of an :class:`xarray.Dataset` (a scene cube of bands).

    Examples
    --------
    >>> import xglacier
    >>> "fill_gaps" in dir(DatasetGlacier) and "flow" not in dir(DatasetGlacier)
    True
    """


@xr.register_dataarray_accessor("glacier")
class DataArrayGlacier(GlacierAccessor):
    """Glacier-monitoring methods of an :class:`xarray.DataArray` (one band, index or product).

    Examples
    --------
    >>> "flow" in dir(DataArrayGlacier) and "ndsi" not in dir(DataArrayGlacier)
    True
    """


_install(DatasetGlacier, DATASET_METHODS + SHARED_METHODS)
_install(DataArrayGlacier, DATAARRAY_METHODS + SHARED_METHODS)
