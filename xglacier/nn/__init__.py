"""What every PyTorch model of xglacier shares: the training loop, seeding, devices,
batching, checkpoints (safetensors + JSON, never pickle) and the registry of model classes.

Modules: ``loop`` (``train_epochs``, ``check_fit_options``, ``seeded``, ``model_device``),
``batches`` (``BatchLoader``), ``checkpoint`` (``save_model``, ``load_model``), ``metadata``
(the checkpoint JSON and its compatibility checks), ``registry`` (``register_model``).

Forecasting (:mod:`xglacier.forecasting`) and segmentation (:mod:`xglacier.segmentation`)
build on these public functions; nothing here knows about patches or tiles. Importing
this package imports torch.
"""

from .checkpoint import checkpoint_paths, load_model, read_metadata, save_model
from .registry import register_model, registered_models

__all__ = [
    "checkpoint_paths",
    "load_model",
    "read_metadata",
    "register_model",
    "registered_models",
    "save_model",
]
