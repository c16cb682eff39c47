"""xglacier: xarray-native glacier monitoring from Landsat time series.

Importing the package registers the ``.glacier`` accessor on xarray objects.

>>> import xglacier
>>> cube, truth = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
>>> ndsi = cube.glacier.mask_clouds().glacier.fill_gaps().glacier.ndsi()
"""

__version__ = "0.1.0"

import rioxarray  # noqa: F401  (registers the .rio accessor used on every output)

from . import errors
from .accessor import GlacierAccessor
from .datasets import open_sample, synthetic_cube
from .forecast import forecast
from .motion import flow, plot_flow
from .patches import PatchPlan, PatchSet, assemble, patches
from .preprocess.align import align_ecc, apply_warps, estimate_ecc
from .preprocess.composite import composite
from .preprocess.gapfill import fill_gaps
from .preprocess.indices import ndsi, ndvi, ndwi, normalized_difference
from .preprocess.masks import decode_qa, mask_clouds, snow_mask
from .preprocess.scenes import filter_scenes, missing_fraction

__all__ = [
    "GlacierAccessor",
    "PatchPlan",
    "PatchSet",
    "__version__",
    "align_ecc",
    "apply_warps",
    "assemble",
    "composite",
    "decode_qa",
    "errors",
    "estimate_ecc",
    "fill_gaps",
    "filter_scenes",
    "flow",
    "forecast",
    "mask_clouds",
    "missing_fraction",
    "ndsi",
    "ndvi",
    "ndwi",
    "normalized_difference",
    "open_sample",
    "patches",
    "plot_flow",
    "snow_mask",
    "synthetic_cube",
]
