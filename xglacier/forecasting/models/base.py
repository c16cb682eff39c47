"""Common interface of every forecasting model (learned or baseline).

A learned model (:class:`ForecastModel` with ``trainable = True``) wraps its network in two
transformations recorded in its ``config`` (hence in its checkpoint):

* input normalisation, ``statistics=(mean, std)`` (set by :func:`xglacier.fit` from the
  training samples; ``None`` is the identity): the network reads ``(x - mean) / std``;
* residual forecasting, ``residual="seasonal"`` (the same quarter one year earlier, i.e. the
  input ``period`` frames before the target), ``"climatology"`` (the mean of the same
  quarter over every year of the inputs), ``"history"`` (the mean of the same quarter over
  every year *before the forecast*, inputs or not: ``forward``'s ``climate``, see
  :mod:`xglacier.forecasting.history`), ``"last"`` (the last input frame) or ``None``: the
  network predicts the change over that reference, and ``forward`` adds the reference back,
  so that a network that outputs zeros *is* the reference forecast. A residual model starts
  there: its output layer is initialised to zero (see :meth:`ForecastModel._zero_start`), so
  training starts from the reference forecast and learns the correction (with early
  stopping, never ending worse on the validation samples).

``forward`` returns ``reference + std * network(...)`` (``mean`` instead of ``reference``
without a residual), so every caller (:func:`xglacier.fit`, :func:`xglacier.evaluate`,
:func:`xglacier.forecast`) sees frames in the data's own units.

Gaps (``gaps=True``, learned models, off by default): ``forward(x, missing=...)`` takes which
input frames were never observed (``composite``'s ``interpolated`` periods, whose values
are a linear interpolation in time). A learned frame ``missing_frame`` (zeros at first, so
an untrained model reads its inputs as one without gaps) is added to the normalised input where a
frame is missing, so the network knows which values were invented (a summer quarter is not
the mean of spring and autumn), and the residual reference is taken from observed inputs
only (the same quarter of the latest year observed, see :meth:`ForecastModel.reference`).
:func:`xglacier.fit` teaches it by hiding observed input frames at random (``gap_rate``)
and putting the interpolation of their neighbours in their place, as ``composite`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..._validate import check_choice, check_flag, check_int, check_number
from ...errors import InputError, ParameterError

#: What ``residual=`` accepts: the reference the network's output is added to.
RESIDUALS = ("seasonal", "climatology", "history", "last")
#: The residuals whose reference is read one seasonal ``period`` (or whole periods) back.
SEASONAL_RESIDUALS = ("seasonal", "climatology", "history")


def season_inputs(n_in: int, period: int, lead: int) -> list[int]:
    """Indices of the inputs in the same season as lead ``lead`` (from 0), the latest first.

    The latest is ``n_in - period + lead % period`` (one seasonal ``period`` before the
    first forecast frame, or before its cycle's repeat); the others lie whole periods earlier.

    Examples
    --------
    >>> season_inputs(12, 4, 0), season_inputs(12, 4, 5), season_inputs(6, 4, 1)
    ([8, 4, 0], [9, 5, 1], [3])
    """
    return list(range(n_in - period + lead % period, -1, -period))


def _statistics(cls_name: str, statistics: Sequence[float] | None) -> list[float] | None:
    if statistics is None:
        return None
    if isinstance(statistics, (str, bytes)) or not isinstance(statistics, Sequence) or len(statistics) != 2:
        raise ParameterError(f"{cls_name}: statistics={statistics!r}; expected (mean, std) or None")
    mean = float(check_number(cls_name, "statistics[0] (mean)", statistics[0]))
    std = float(check_number(cls_name, "statistics[1] (std)", statistics[1], low=0, low_open=True))
    return [mean, std]


def season_means(x: torch.Tensor, period: int, steps: int) -> torch.Tensor:
    """``(B, steps, P, P)``: for each lead, the mean of the ``(B, n_in, P, P)`` inputs of its season."""
    n_in = x.shape[1]
    return torch.stack([x[:, season_inputs(n_in, period, k)].mean(dim=1) for k in range(steps)], dim=1)


def _observed(x: torch.Tensor, group: list[int], missing: torch.Tensor, *, mean: bool) -> torch.Tensor:
    """``(B, P, P)``: the mean (``mean``) or the first of the observed inputs ``group`` (latest
    first) of each sample; all of ``group`` for a sample with none observed."""
    seen = ~missing[:, group]
    seen = torch.where(seen.any(dim=1, keepdim=True), seen, torch.ones_like(seen))
    if not mean:  # the first observed: a one-hot of the first True
        seen = seen & (seen.cumsum(dim=1) == 1)
    w = seen.to(x.dtype)[:, :, None, None]
    return (x[:, group] * w).sum(dim=1) / w.sum(dim=1)


class ForecastModel(nn.Module):
    """A model mapping ``(B, n_in, P, P)`` frames to ``(B, n_out, P, P)`` frames.

    Subclasses call ``super().__init__(patch_size=..., n_in=..., n_out=..., **more)``; all
    keywords are kept in ``self.config`` so that ``type(m)(**m.config)`` rebuilds the model
    (this is what checkpoints store). Sizes are Python or NumPy integers (kept as ``int``).

    Learned models implement ``_predict(x, steps, targets, teacher_forcing)`` on normalised
    inputs, returning their raw output (the change over the reference with ``residual``);
    ``forward`` normalises, calls it and maps the output back (see the module docstring).
    Teacher-forced ``targets`` reach ``_predict`` in the same space as its output.

    Parameters
    ----------
    patch_size, n_in, n_out
        Patch side and frames in / out.
    residual
        ``"seasonal"``, ``"climatology"``, ``"history"``, ``"last"`` or ``None`` (learned
        models only).
    period
        Frames per seasonal cycle for ``residual="seasonal"``, ``"climatology"`` and
        ``"history"`` (4 for quarterly frames; at most ``n_in``).
    statistics
        ``(mean, std)`` input normalisation, or ``None``.
    gaps
        Learned models: read ``forward``'s ``missing`` flags (see the module docstring): a
        ``(patch_size, patch_size)`` parameter ``missing_frame`` is added to missing inputs.
        Off by default: on the demo's sample it did not learn to correct an interpolated
        quarter (docs/forecasting.md). Checkpoints written before it existed load with False.

    Examples
    --------
    >>> import numpy as np
    >>> ForecastModel(patch_size=np.int64(8), n_in=4, n_out=2).config
    {'patch_size': 8, 'n_in': 4, 'n_out': 2, 'residual': None, 'period': 4, 'statistics': None, 'gaps': False}
    """

    trainable = True
    #: what a checkpoint without these keys was trained with (see nn/checkpoint.py)
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {"gaps": False}

    def __init__(self, *, patch_size: int, n_in: int, n_out: int, residual: str | None = None,
                 period: int = 4, statistics: Sequence[float] | None = None, gaps: bool | None = None,
                 **config: Any) -> None:
        super().__init__()
        name = type(self).__name__
        patch_size, n_in, n_out = (check_int(name, label, value, low=1) for label, value in
                                   (("patch_size", patch_size), ("n_in", n_in), ("n_out", n_out)))
        self.patch_size, self.n_in, self.n_out = patch_size, n_in, n_out
        self.config = {"patch_size": patch_size, "n_in": n_in, "n_out": n_out}
        if self.trainable:
            if residual is not None:
                check_choice(name, "residual", residual, RESIDUALS)
            period = check_int(name, "period", period, low=1)
            if residual in SEASONAL_RESIDUALS and period > n_in:
                raise ParameterError(f"{name}: residual={residual!r} with period={period} needs n_in >= "
                                     f"period; n_in={n_in}")
            self.residual, self.period = residual, period
            self.statistics = _statistics(name, statistics)
            self.gaps = check_flag(name, "gaps", False if gaps is None else gaps)
            # zeros: the missing frame starts at the normalised mean (no random draw, so the other
            # layers get the same initial weights for a seed with or without it)
            self.missing_frame = (nn.Parameter(torch.zeros(patch_size, patch_size)) if self.gaps
                                  else None)
            self.config.update(residual=residual, period=period, statistics=self.statistics,
                               gaps=self.gaps)
        elif residual is not None or statistics is not None or gaps is not None:
            raise ParameterError(f"{name}: residual, statistics and gaps are for learned models; a "
                                 "baseline forecasts from the raw frames")
        self.config.update(config)

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def set_statistics(self, mean: float, std: float) -> None:
        """Set the input normalisation ``(x - mean) / std`` (kept in ``config``, hence in checkpoints).

        Examples
        --------
        >>> from xglacier.models import SALSTM
        >>> m = SALSTM(preset="small", patch_size=4, heads=4)
        >>> m.set_statistics(0.25, 0.5)
        >>> m.config["statistics"]
        [0.25, 0.5]
        """
        self.statistics = _statistics(type(self).__name__, (mean, std))
        self.config["statistics"] = self.statistics

    @property
    def reads_climate(self) -> bool:
        """Whether ``forward`` needs ``climate=`` (``residual="history"``)."""
        return getattr(self, "residual", None) == "history"

    def reference(self, x: torch.Tensor, steps: int, missing: torch.Tensor | None = None,
                  climate: torch.Tensor | None = None) -> torch.Tensor | None:
        """The ``(B, steps, P, P)`` frames the residual is added to (None without a residual).

        ``"seasonal"``: lead ``k`` (from 0) takes input ``n_in - period + k % period``, as
        :class:`~xglacier.models.SeasonalPersistence`; ``"climatology"``: the mean of the
        inputs of that season, as :class:`~xglacier.models.SeasonalClimatology`; ``"last"``:
        the last input frame. With ``missing`` (``(B, n_in)`` booleans, True where an input
        was interpolated), only observed inputs count: the same quarter of the latest year
        observed, the mean over the observed years, the last observed frame; where none of a
        lead's inputs was observed, those without ``missing``. ``"history"``: ``climate``,
        the ``(B, >= steps, P, P)`` season means over every year before the forecast (from
        :meth:`~xglacier.PatchSet.to_torch` with ``climate=True``, or :func:`xglacier.forecast`),
        and ``"seasonal"``'s reference where a pixel of it is NaN (never observed).
        """
        if getattr(self, "residual", None) is None:
            return None
        if self.residual == "history":
            return self._climate(x, steps, missing, climate)
        if self.residual == "last":
            groups = [list(range(self.n_in - 1, -1, -1))] * steps
        else:
            groups = [season_inputs(self.n_in, self.period, k) for k in range(steps)]
        if missing is None:
            if self.residual == "climatology":
                return season_means(x, self.period, steps)
            return x[:, [g[0] for g in groups]]
        return torch.stack([_observed(x, g, missing, mean=self.residual == "climatology")
                            for g in groups], dim=1)

    def forward(self, x: torch.Tensor, n_out: int | None = None, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0, missing: torch.Tensor | None = None,
                climate: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, n_in, P, P)`` -> ``(B, n_out, P, P)`` frames (``n_out`` overrides the model's).

        ``missing``: ``(B, n_in)`` booleans, True where an input frame was interpolated, not
        observed (read by a model with ``gaps=True``, ignored by one with ``gaps=False``).
        ``climate``: ``(B, n_out, P, P)`` season means of the targets over the years before
        (needed by ``residual="history"``, ignored by other models).
        """
        self._check(x)
        steps = n_out or self.n_out
        mean, std = self.statistics or (0.0, 1.0)
        missing = self._missing(x, missing)
        ref = self.reference(x, steps, missing, climate)
        base = ref if ref is not None else mean
        if targets is not None:
            targets = (targets - base) / std
        xn = (x - mean) / std
        if missing is not None:
            xn = xn + missing[:, :, None, None].to(xn.dtype) * self.missing_frame
        out = self._predict(xn, steps, targets, teacher_forcing)
        return base + out * std

    def _climate(self, x: torch.Tensor, steps: int, missing: torch.Tensor | None,
                 climate: torch.Tensor | None) -> torch.Tensor:
        name = type(self).__name__
        want = (x.shape[0], steps, self.patch_size, self.patch_size)
        if climate is None:
            raise InputError(f"{name}: residual='history' needs climate=, the {want} season means of the "
                             "targets over the years before (PatchSet.to_torch(climate=True); fit, "
                             "evaluate and forecast pass it)")
        climate = torch.as_tensor(climate, device=x.device, dtype=x.dtype)
        if climate.ndim != 4 or climate.shape[0] != want[0] or climate.shape[1] < steps \
                or tuple(climate.shape[2:]) != want[2:]:
            raise InputError(f"{name}: climate of shape {tuple(climate.shape)}; expected {want}")
        climate = climate[:, :steps]
        groups = [season_inputs(self.n_in, self.period, k) for k in range(steps)]
        seasonal = (x[:, [g[0] for g in groups]] if missing is None else
                    torch.stack([_observed(x, g, missing, mean=False) for g in groups], dim=1))
        return torch.where(torch.isfinite(climate), climate, seasonal)

    def _missing(self, x: torch.Tensor, missing: torch.Tensor | None) -> torch.Tensor | None:
        """The checked ``missing`` flags, or None when there are none or the model ignores them."""
        if missing is None or not getattr(self, "gaps", False):
            return None
        missing = torch.as_tensor(missing, device=x.device)
        if missing.dtype != torch.bool or tuple(missing.shape) != tuple(x.shape[:2]):
            raise InputError(f"{type(self).__name__}: missing of shape {tuple(missing.shape)} and dtype "
                             f"{missing.dtype}; expected booleans of shape {tuple(x.shape[:2])}")
        return missing if bool(missing.any()) else None

    def _zero_start(self, layer: nn.Module) -> None:
        """With a residual, zero the weights and bias of the output ``layer``: the untrained model
        forecasts the reference exactly (its gradients still reach the layer, and through it the
        rest of the network after the first step)."""
        if getattr(self, "residual", None) is not None:
            with torch.no_grad():
                for tensor in layer.parameters(recurse=False):
                    tensor.zero_()

    def _predict(self, x: torch.Tensor, steps: int, targets: torch.Tensor | None,
                 teacher_forcing: float) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement _predict")

    def _check(self, x: torch.Tensor) -> None:
        want = (self.n_in, self.patch_size, self.patch_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise InputError(
                f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected (batch, {want[0]}, "
                f"{want[1]}, {want[2]})"
            )

    @staticmethod
    def _use_truth(targets: torch.Tensor | None, teacher_forcing: float, training: bool) -> bool:
        """Teacher forcing: feed the true frame back instead of the prediction, at random."""
        return (targets is not None and training and teacher_forcing > 0
                and bool(torch.rand(()) < teacher_forcing))


def resolve_preset(cls_name: str, preset: str | None, presets: dict[str, dict[str, Any]],
                   given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Keywords given (not None) win over the named preset, the preset over ``defaults``.

    The integer keywords among ``patch_size``, ``n_in``, ``n_out``, ``hidden``, ``layers``,
    ``heads`` and ``kernel`` are checked (NumPy integers accepted, bools refused) and made ``int``.

    Examples
    --------
    >>> resolve_preset("M", "small", {"small": {"layers": 2}}, {"layers": None, "n_in": 3},
    ...                {"layers": 3, "n_in": 4})
    {'layers': 2, 'n_in': 3}
    """
    base = dict(defaults)
    if preset is not None:
        base.update(presets[check_choice(cls_name, "preset", preset, sorted(presets))])
    kw = {k: v if v is not None else base.get(k) for k, v in given.items()}
    for key in ("patch_size", "n_in", "n_out", "hidden", "layers", "heads", "kernel"):
        if key in kw:
            kw[key] = check_int(cls_name, key, kw[key], low=1, allow_none=key == "hidden")
    return kw
