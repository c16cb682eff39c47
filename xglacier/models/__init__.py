"""Models: forecasting (SA-LSTM-H, LSTM encoder-decoder, ConvLSTM, naive baselines) and
segmentation (U-Net, two binary models combined).

Forecasting models share one interface (:class:`~xglacier.models.base.ForecastModel`):
``model(x)`` maps ``(batch, n_in, P, P)`` to ``(batch, n_out, P, P)``. Segmentation models
share :class:`~xglacier.models.segbase.SegmentationModel`: ``predict_proba(features)``
maps raw ``(batch, channel, y, x)`` features to class probabilities ``(batch, class, y, x)``.
"""

from .base import ForecastModel
from .baselines import Climatology, LinearTrend, Persistence, SeasonalPersistence
from .checkpoint import CheckpointError, CheckpointNotFoundError, load_model, save_model
from .convlstm import ConvLSTM
from .lstm import LSTMEncoderDecoder
from .salstm import SALSTM
from .segbase import SegmentationModel
from .unet import CombinedBinary, UNet

#: Every model class by name (what checkpoints refer to).
MODEL_CLASSES: dict[str, type[ForecastModel] | type[SegmentationModel]] = {
    cls.__name__: cls
    for cls in (SALSTM, LSTMEncoderDecoder, ConvLSTM, Persistence, SeasonalPersistence,
                Climatology, LinearTrend, UNet, CombinedBinary)
}

#: The naive baselines every evaluation reports.
BASELINES = (Persistence, SeasonalPersistence, Climatology, LinearTrend)

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
