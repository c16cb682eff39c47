"""All models in one namespace (kept for user code written before the stage folders).

The forecasting models live in :mod:`xglacier.forecasting.models`, the segmentation
models in :mod:`xglacier.segmentation.models`, checkpoints in :mod:`xglacier.nn`.

>>> from xglacier.models import SALSTM, UNet
>>> SALSTM.__module__, UNet.__module__
('xglacier.forecasting.models.salstm', 'xglacier.segmentation.models.unet')
"""

from ..errors import CheckpointError, CheckpointNotFoundError
from ..forecasting import models as _forecasting
from ..forecasting.models import *  # noqa: F403  (the re-export is the point of this module)
from ..nn.checkpoint import load_model, save_model
from ..nn.registry import registered_models
from ..segmentation import models as _segmentation
from ..segmentation.models import *  # noqa: F403

#: Every model class by name (what checkpoints refer to).
MODEL_CLASSES = registered_models()

__all__ = [
    *_forecasting.__all__,
    *_segmentation.__all__,
    "MODEL_CLASSES",
    "CheckpointError",
    "CheckpointNotFoundError",
    "load_model",
    "save_model",
]
