"""Segmentation models: the paper's U-Net, two binary models combined, and the NDSI rule.

All share :class:`SegmentationModel`: ``predict_proba(features)`` maps raw
``(batch, channel, y, x)`` features to class probabilities ``(batch, class, y, x)``.
"""

from .base import SegmentationModel
from .ndsi_rule import NDSIRule
from .unet import CombinedBinary, UNet

__all__ = ["CombinedBinary", "NDSIRule", "SegmentationModel", "UNet"]
