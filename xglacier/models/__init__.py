"""All models in one namespace (kept for user code written before the stage folders).

The forecasting models live in :mod:`xglacier.forecasting.models`, the segmentation
models in :mod:`xglacier.segmentation.models`, checkpoints in :mod:`xglacier.nn`.

>>> from xglacier.models import SALSTM, UNet
>>> SALSTM.__module__, UNet.__module__
('xglacier.forecasting.models.salstm', 'xglacier.segmentation.models.unet')
"""

from ..errors import CheckpointError, CheckpointNotFoundError
from ..forecasting.models import (
    BASELINES,
    SALSTM,
    Climatology,
    ConvLSTM,
    ForecastModel,
    LinearTrend,
    LSTMEncoderDecoder,
    Persistence,
    SeasonalPersistence,
)
from ..nn.checkpoint import load_model, save_model
from ..nn.registry import registered_models
from ..segmentation.models import CombinedBinary, SegmentationModel, UNet

#: Every model class by name (what checkpoints refer to).
MODEL_CLASSES = registered_models()

__all__ = [
    "BASELINES",
    "MODEL_CLASSES",
    "SALSTM",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Climatology",
    "CombinedBinary",
    "ConvLSTM",
    "ForecastModel",
    "LSTMEncoderDecoder",
    "LinearTrend",
    "Persistence",
    "SeasonalPersistence",
    "SegmentationModel",
    "UNet",
    "load_model",
    "save_model",
]
