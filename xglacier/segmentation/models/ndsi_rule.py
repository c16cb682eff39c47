"""The NDSI rule as a segmentation model: checkpointable, no training needed.

Where a pipeline takes a model checkpoint (``xglacier batch``, ``xglacier segment``), the
classic band-ratio rule can stand in for a trained network: glacier where NDSI exceeds a
threshold (0.4, as :func:`xglacier.segmentation.classical.ndsi_rule`), with a steep logistic
instead of a hard step so that it gives probabilities like any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..._validate import check_number
from ...errors import ParameterError
from ...nn.registry import register_model
from .base import SegmentationModel

#: The rule's threshold: the one the classical baseline uses.
NDSI_THRESHOLD = 0.4


@register_model
class NDSIRule(SegmentationModel):
    """Glacier where the ``ndsi`` channel exceeds ``threshold``.

    P(glacier) = sigmoid(steepness * (NDSI - threshold)).

    A two-class model (``background``, then the glacier class) without trainable weights;
    ``save_model`` / ``load_model`` keep its settings. :func:`xglacier.segment` gives no
    class to a pixel where any of the model's channels is missing (as for every model), so
    list only ``"ndsi"`` to keep other channels' gaps (e.g. slope at the scene's edge) out.

    Parameters
    ----------
    channels
        The feature channels it will be given (the order of ``xglacier.features``); one of
        them must be ``"ndsi"``, the others are ignored.
    classes
        Two class names, background first.
    threshold
        NDSI above which a pixel is glacier.
    steepness
        Slope of the logistic, per NDSI unit (50: P = 0.12 and 0.88 at +-0.04 around the threshold).
    mean, std, patch_size, binary_head
        As :class:`SegmentationModel` (statistics are undone before the rule applies).

    Examples
    --------
    >>> import torch
    >>> rule = NDSIRule(channels=["green", "ndsi"])
    >>> x = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.1, 0.35, 0.45, 0.9]).reshape(1, 2, 2, 2)
    >>> rule.predict_proba(x)[0, 1].gt(0.5).tolist()
    [[False, False], [True, True]]
    """

    def __init__(self, channels: Sequence[str] = ("ndsi",),
                 classes: Sequence[str] = ("background", "glacier"), *,
                 threshold: float = NDSI_THRESHOLD, steepness: float = 50.0, **config: Any) -> None:
        name = type(self).__name__
        threshold = float(check_number(name, "threshold", threshold, low=-1, high=1))
        steepness = float(check_number(name, "steepness", steepness, low=0, low_open=True))
        super().__init__(channels, classes, threshold=threshold, steepness=steepness, **config)
        if "ndsi" not in self.channels:
            raise ParameterError(f"{name}: channels={list(self.channels)}; expected an 'ndsi' channel")
        if len(self.classes) != 2:
            raise ParameterError(f"{name}: classes={list(self.classes)}; expected two (background, glacier)")
        self.index = self.channels.index("ndsi")
        self.threshold, self.steepness = threshold, steepness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.index
        ndsi = x[:, i:i + 1] * self.std[:, i:i + 1] + self.mean[:, i:i + 1]
        logit = self.steepness * (ndsi - self.threshold)
        if self.binary_head:
            return logit
        return torch.cat([torch.zeros_like(logit), logit], dim=1)
