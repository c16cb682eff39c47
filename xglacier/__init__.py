"""xglacier: xarray-native glacier monitoring from Landsat time series.

Importing the package registers the ``.glacier`` accessor on xarray objects.

>>> import xglacier
>>> cube, truth = xglacier.synthetic_cube(shape=(32, 32), end="2020-03-01")
>>> ndsi = cube.glacier.mask_clouds().glacier.fill_gaps().glacier.ndsi()
"""

__version__ = "0.1.0"

import rioxarray  # noqa: F401  (registers the .rio accessor used on every output)

from . import errors, review
from .accessor import DataArrayGlacier, DatasetGlacier, GlacierAccessor
from .datasets import open_sample, synthetic_cube
from .forecasting.blend import assemble
from .forecasting.forecast import forecast
from .forecasting.patches import PatchPlan, PatchSet, patches
from .forecasting.skill import skill_map
from .io.local import open_scenes
from .io.stac import load, search
from .io.store import to_netcdf, to_zarr
from .motion import flow, plot_flow
from .preprocess.align import ECCOptions, align_ecc, apply_warps, estimate_ecc
from .preprocess.composite import composite
from .preprocess.gapfill import fill_gaps
from .preprocess.indices import ndsi, ndvi, ndwi, normalized_difference
from .preprocess.masks import decode_qa, mask_clouds, snow_mask
from .preprocess.scenes import filter_scenes, missing_fraction
from .preprocess.terrain import slope
from .segmentation.classical import PixelClassifier, ndsi_rule, train_baselines
from .segmentation.features import features
from .segmentation.labels import rasterize
from .segmentation.metrics import confusion_matrix, evaluate_segmentation, relabel, scores
from .segmentation.segment import segment
from .segmentation.vectors import geodesic_area, polygonize, write_vector

# Modules that import torch load on first use, so that `import xglacier` stays light.
_LAZY = {
    "fit": "xglacier.forecasting.train",
    "evaluate": "xglacier.forecasting.train",
    "save_model": "xglacier.nn.checkpoint",
    "load_model": "xglacier.nn.checkpoint",
    "models": "xglacier.models",
    "training": "xglacier.training",
    "nn": "xglacier.nn",
    "fit_segmentation": "xglacier.segmentation.train",
    "segmentation_tiles": "xglacier.segmentation.tiles",
    "fine_tune": "xglacier.segmentation.finetune",
    # dask.distributed loads on first use too
    "batch": "xglacier.batch",
    "run_glaciers": "xglacier.batch",
    "SegmentationTiles": "xglacier.segmentation.tileset",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith(name) else getattr(module, name)
    raise AttributeError(f"module 'xglacier' has no attribute {name!r}")


__all__ = [
    "DataArrayGlacier",
    "DatasetGlacier",
    "ECCOptions",
    "GlacierAccessor",
    "PatchPlan",
    "PatchSet",
    "PixelClassifier",
    "SegmentationTiles",
    "__version__",
    "align_ecc",
    "apply_warps",
    "assemble",
    "composite",
    "confusion_matrix",
    "decode_qa",
    "errors",
    "estimate_ecc",
    "evaluate",
    "evaluate_segmentation",
    "features",
    "fill_gaps",
    "filter_scenes",
    "fine_tune",
    "fit",
    "fit_segmentation",
    "flow",
    "forecast",
    "geodesic_area",
    "load",
    "load_model",
    "mask_clouds",
    "missing_fraction",
    "ndsi",
    "ndsi_rule",
    "ndvi",
    "ndwi",
    "normalized_difference",
    "open_sample",
    "open_scenes",
    "patches",
    "plot_flow",
    "polygonize",
    "rasterize",
    "relabel",
    "review",
    "run_glaciers",
    "save_model",
    "scores",
    "search",
    "segment",
    "segmentation_tiles",
    "skill_map",
    "slope",
    "snow_mask",
    "synthetic_cube",
    "to_netcdf",
    "to_zarr",
    "train_baselines",
    "write_vector",
]
