"""Segmentation models: the paper's U-Net and two binary models combined.

All share :class:`SegmentationModel`: ``predict_proba(features)`` maps raw
``(batch, channel, y, x)`` features to class probabilities ``(batch, class, y, x)``.
"""

from .base import SegmentationModel
from .unet import CombinedBinary, UNet

__all__ = ["CombinedBinary", "SegmentationModel", "UNet"]
