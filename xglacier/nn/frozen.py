"""A model as it is at the call, for a lazy graph that runs it later."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["frozen_copy"]


def frozen_copy(model: Any, *, device: str | None = None) -> Any:
    """An eval-mode copy of ``model`` (on ``device`` when given) for a lazy prediction graph.

    A graph holding the user's model itself would see whatever happens to it before it is
    computed (training it further changes a lazy result) and would leave it in eval mode
    (and on another device); a copy made at the call has neither effect.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Dropout(0.5)
    >>> frozen = frozen_copy(net)
    >>> net.training, frozen.training
    (True, False)
    """
    frozen = copy.deepcopy(model)
    if callable(getattr(frozen, "eval", None)):
        frozen.eval()
    if device is not None and callable(getattr(frozen, "parameters", None)):
        frozen.to(device)
    return frozen
