"""Losses for segmentation: soft Dice (multi-class and binary), cross-entropy, the L1 penalty.

The paper trains with the Dice loss (citing the generalised Dice of Sudre et al. 2017)
and an L1 weight penalty with lambda = 5e-4. Pixels labelled ``ignore`` (255 by
default: no label, padded tile edges) count nowhere: not in the prediction's sums, not
in the reference's.

Every Dice here is computed over the whole batch as one volume (the sums run over
samples and pixels), which is what the paper's code does and what keeps rare classes
from giving NaN or noise on tiles where they are absent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._validate import check_choice, check_number
from ..errors import InputError, ParameterError

__all__ = ["LOSSES", "binary_dice_loss", "dice_loss", "l1_penalty", "segmentation_loss"]

#: Loss names accepted by :func:`segmentation_loss` (and ``fit_segmentation``).
LOSSES = ("dice", "ce", "dice+ce")


def _check_target(func: str, target: torch.Tensor, n_classes: int, ignore: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target as int64, valid mask)``; InputError for labels that are not class indices."""
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise InputError(f"{func}: target has dtype {target.dtype}; expected integer class indices")
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore is None else target != ignore
    bad = valid & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        values = [int(v) for v in target[bad].unique()[:5]]
        raise InputError(f"{func}: target holds class indices {values} outside 0..{n_classes - 1}"
                         + (f" (and not the ignore value {ignore})" if ignore is not None else ""))
    return target, valid


def _valid_onehot(func: str, target: torch.Tensor, n_classes: int, ignore: int | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid mask (B, 1, H, W), one-hot reference (B, K, H, W))`` with ignored pixels zero."""
    target, valid = _check_target(func, target, n_classes, ignore)
    index = torch.where(valid, target, torch.zeros_like(target))
    onehot = nn.functional.one_hot(index, n_classes).movedim(-1, 1).to(torch.float32)
    valid = valid.unsqueeze(1)
    return valid, onehot * valid


def _class_weights(func: str, weights: Any, n: int) -> torch.Tensor | str | None:
    if weights is None or (isinstance(weights, str) and weights == "generalised"):
        return weights
    if isinstance(weights, str) or not isinstance(weights, (Sequence, torch.Tensor)):
        raise ParameterError(f"{func}: weights={weights!r}; expected None, 'generalised' or one "
                             f"number per class ({n})")
    w = torch.as_tensor([float(v) for v in weights], dtype=torch.float32)
    if w.numel() != n or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ParameterError(f"{func}: weights={[float(v) for v in w]}; expected {n} finite numbers "
                             ">= 0, not all 0 (one per class)")
    return w


def dice_loss(
    probabilities: torch.Tensor,
    target: torch.Tensor,
    *,
    weights: Sequence[float] | str | None = None,
    smooth: float = 1.0,
    ignore: int | None = 255,
) -> torch.Tensor:
    """Multi-class soft Dice loss of class probabilities against integer labels.

    With ``I_k = sum(p_k * r_k)``, ``P_k = sum(p_k)`` and ``R_k = sum(r_k)`` (``r_k`` the
    one-hot reference; sums over the batch and the pixels, ignored pixels left out):

    - ``weights=None`` or a sequence ``w``: the weighted mean over classes of the per-class
      Dice losses, ``sum_k w_k (1 - (2 I_k + s) / (P_k + R_k + s)) / sum_k w_k`` (equal
      weights by default: every class counts as much as the background);
    - ``weights="generalised"`` (Sudre et al. 2017): ``1 - (2 sum_k w_k I_k + s) /
      (sum_k w_k (P_k + R_k) + s)`` with ``w_k = 1 / R_k**2``; a class absent from the
      batch gets the largest weight of the present classes, and the weights are scaled
      so that ``sum_k w_k R_k = sum_k R_k`` (the ratio does not change; ``smooth`` keeps
      its meaning in pixels).

    Parameters
    ----------
    probabilities
        ``(batch, class, y, x)`` probabilities (softmax output).
    target
        ``(batch, y, x)`` integer class indices, ``ignore`` where there is no label.
    weights
        ``None``, ``"generalised"`` or one weight per class.
    smooth
        Added to numerator and denominator: a class absent from both the reference and
        the prediction scores a perfect Dice, and gradients stay finite.
    ignore
        Label value excluded from the loss (``None``: every pixel counts).

    Returns
    -------
    torch.Tensor
        Scalar loss, 0 for a perfect prediction.

    Examples
    --------
    >>> import torch
    >>> target = torch.tensor([[[0, 1], [2, 255]]])
    >>> perfect = torch.nn.functional.one_hot(target.clamp(max=2), 3).movedim(-1, 1).float()
    >>> dice_loss(perfect, target).item()
    0.0
    >>> uniform = torch.full((1, 3, 2, 2), 1 / 3)
    >>> round(dice_loss(uniform, target, smooth=0.0).item(), 4)  # per class 1 - 2(1/3)/(1 + 1)
    0.6667
    """
    func = "dice_loss"
    if probabilities.ndim != 4 or target.shape != (probabilities.shape[0], *probabilities.shape[2:]):
        raise InputError(f"{func}: probabilities {tuple(probabilities.shape)} and target "
                         f"{tuple(target.shape)}; expected (batch, class, y, x) and (batch, y, x)")
    s = float(check_number(func, "smooth", smooth, low=0))
    n = probabilities.shape[1]
    w = _class_weights(func, weights, n)
    valid, ref = _valid_onehot(func, target, n, ignore)
    p = probabilities * valid
    dims = (0, 2, 3)
    inter = (p * ref).sum(dim=dims)
    total = p.sum(dim=dims) + ref.sum(dim=dims)
    if isinstance(w, str):  # generalised
        volume = ref.sum(dim=dims)
        present = volume > 0
        gw = torch.ones_like(volume)
        if bool(present.any()):
            gw = torch.where(present, 1.0 / volume.clamp_min(1.0) ** 2, torch.zeros_like(volume))
            gw = torch.where(present, gw, gw.max())
            gw = gw * volume.sum() / (gw * volume).sum()
        return 1 - (2 * (gw * inter).sum() + s) / ((gw * total).sum() + s)
    per_class = 1 - (2 * inter + s) / (total + s)
    if w is None:
        return per_class.mean()
    w = w.to(per_class.device)
    return (w * per_class).sum() / w.sum()


def binary_dice_loss(
    probability: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = 1.0,
    ignore: int | None = 255,
) -> torch.Tensor:
    """Soft Dice loss of the positive class: ``1 - (2 I + s) / (P + R + s)``.

    Parameters
    ----------
    probability
        ``(batch, y, x)`` or ``(batch, 1, y, x)`` probability of the positive class
        (sigmoid output).
    target
        ``(batch, y, x)`` labels: 1 positive, 0 negative, ``ignore`` no label.
    smooth, ignore
        As in :func:`dice_loss`.

    Examples
    --------
    >>> import torch
    >>> target = torch.tensor([[[0, 1], [1, 255]]])
    >>> binary_dice_loss(target.clamp(max=1).float(), target).item()
    0.0
    >>> round(binary_dice_loss(torch.full((1, 2, 2), 0.5), target, smooth=0).item(), 4)  # 1 - 2/3.5
    0.4286
    """
    func = "binary_dice_loss"
    if probability.ndim == 4 and probability.shape[1] == 1:
        probability = probability[:, 0]
    if probability.shape != target.shape:
        raise InputError(f"{func}: probability {tuple(probability.shape)} and target "
                         f"{tuple(target.shape)}; expected (batch, y, x) (or (batch, 1, y, x)) for both")
    s = float(check_number(func, "smooth", smooth, low=0))
    valid, ref = _valid_onehot(func, target, 2, ignore)
    p = probability * valid[:, 0]
    r = ref[:, 1]
    return 1 - (2 * (p * r).sum() + s) / (p.sum() + r.sum() + s)


def l1_penalty(model: nn.Module, *, lam: float = 5e-4) -> torch.Tensor:
    """``lam * sum(|w|)`` over the model's trainable weights (convolution kernels, not biases).

    Added to the training loss by ``fit_segmentation(l1=...)`` (the paper: 5e-4). Biases
    and other 1-D parameters are left out, as usual for weight penalties.

    Examples
    --------
    >>> import torch
    >>> conv = torch.nn.Conv2d(1, 1, 2)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]]))
    >>> l1_penalty(conv, lam=0.5).item()
    1.75
    """
    check_number("l1_penalty", "lam", lam, low=0)
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    if not weights or lam == 0:
        ref = next(iter(model.parameters()), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return lam * torch.stack([p.abs().sum() for p in weights]).sum()


def segmentation_loss(
    model: nn.Module,
    *,
    loss: str = "dice",
    class_weights: Sequence[float] | str | None = None,
    smooth: float = 1.0,
    ignore: int | None = 255,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a segmentation model: ``loss_fn(logits, target) -> scalar``.

    Parameters
    ----------
    model
        A :class:`~xglacier.segmentation.models.SegmentationModel`: its ``probabilities`` turns
        logits into probabilities, and a ``binary_head`` model gets the binary Dice (of the
        positive class) and the binary cross-entropy.
    loss
        ``"dice"`` (the paper), ``"ce"`` (cross-entropy) or ``"dice+ce"`` (their sum).
    class_weights
        Dice: ``None``, ``"generalised"`` or one weight per class (see :func:`dice_loss`);
        cross-entropy: ``None`` or one weight per class. A binary-head model takes none.
    smooth, ignore
        As in :func:`dice_loss`; ignored pixels are left out of the cross-entropy too.

    Examples
    --------
    >>> import torch
    >>> from xglacier.models import UNet
    >>> model = UNet(["green"], ["background", "clean", "debris"], depth=1, base_channels=2)
    >>> loss_fn = segmentation_loss(model, loss="dice+ce", class_weights=[1.0, 1.0, 2.0])
    >>> target = torch.tensor([[[0, 1], [2, 255]]])
    >>> logits = 50 * torch.nn.functional.one_hot(target.clamp(max=2), 3).movedim(-1, 1).float()
    >>> round(loss_fn(logits, target).item(), 6)
    0.0
    """
    func = "segmentation_loss"
    check_choice(func, "loss", loss, LOSSES)
    binary = bool(getattr(model, "binary_head", False))
    n = len(getattr(model, "classes", ())) or None
    if n is None or not hasattr(model, "probabilities"):
        raise ParameterError(f"{func}: model is a {type(model).__name__}; expected a SegmentationModel")
    if binary and class_weights is not None:
        raise ParameterError(f"{func}: class_weights={class_weights!r} with a binary-head model; the "
                             "binary Dice scores the positive class only: pass class_weights=None")
    dice_w = _class_weights(func, class_weights, n)
    if loss != "dice" and isinstance(dice_w, str):
        raise ParameterError(f"{func}: class_weights='generalised' is a Dice weighting; with "
                             f"loss={loss!r} pass None or one weight per class")
    check_number(func, "smooth", smooth, low=0)

    def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target, valid = _check_target(func, target, n, ignore)
        if not bool(valid.any()):
            return logits.sum() * 0.0  # no labelled pixel: no signal, but no NaN either
        if binary:
            return nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0][valid], target[valid].to(logits.dtype))
        w = dice_w.to(logits.device) if isinstance(dice_w, torch.Tensor) else None
        safe = torch.where(valid, target, torch.full_like(target, -100))
        return nn.functional.cross_entropy(logits, safe, weight=w, ignore_index=-100)

    def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = model.probabilities(logits)
        if binary:
            return binary_dice_loss(p[:, 1], target, smooth=smooth, ignore=ignore)
        return dice_loss(p, target, weights=dice_w, smooth=smooth, ignore=ignore)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if loss == "dice":
            return dice(logits, target)
        if loss == "ce":
            return cross_entropy(logits, target)
        return dice(logits, target) + cross_entropy(logits, target)

    loss_fn.__name__ = loss
    return loss_fn
