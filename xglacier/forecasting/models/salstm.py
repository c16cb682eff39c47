"""SA-LSTM-H: LSTM encoder, multi-head self-attention, linear head, recursive decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..._validate import check_choice, check_number
from ...errors import ParameterError
from ...nn.registry import register_model
from .base import ForecastModel, resolve_preset

#: The paper's Table 2 (200,072,500 parameters) and a CPU-sized variant.
PRESETS = {
    "paper": dict(patch_size=50, n_in=4, n_out=4, hidden=2500, layers=3, heads=5, dropout=0.0),
    # hidden = patch_size ** 2 as in the paper: a narrower state cannot carry the frame
    "small": dict(patch_size=20, n_in=4, n_out=4, hidden=400, layers=2, heads=4, dropout=0.1),
}

#: How a predicted frame rejoins the state sequence (see ``feedback``).
FEEDBACKS = ("tanh", "linear")

_DEFAULTS = dict(patch_size=50, n_in=4, n_out=4, hidden=None, layers=3, heads=5, dropout=0.0)


@register_model
class SALSTM(ForecastModel):
    """Self-attention LSTM hybrid (SA-LSTM-H) of Müller et al. (2023).

    The ``n_in`` input patches, flattened, pass through a stacked LSTM; multi-head
    self-attention weighs the ``n_in`` hidden states of its last layer; the attended
    states, flattened (``n_in * hidden``), go through a linear layer to one frame. That
    frame joins the end of the sequence of states (the oldest leaves, first in first out)
    and the attention and head run again, ``n_out`` times.

    Parameters
    ----------
    patch_size, n_in, n_out
        Patch side and frames in/out.
    hidden
        LSTM hidden size; default ``patch_size ** 2`` (the paper), in which case a
        predicted frame joins the state sequence as it is; otherwise through a linear
        embedding.
    layers, heads, dropout
        LSTM layers, attention heads (must divide ``hidden``), dropout.
    feedback
        How a predicted frame rejoins the sequence of states: ``"tanh"`` (squashed into
        (-1, 1) like the LSTM's own states, so that the recursion cannot amplify itself; a
        loss of 1e5 in training without it) or ``"linear"`` (as it is: checkpoints written
        before this keyword existed are rebuilt so).
    preset
        ``"paper"`` (Table 2: 200,072,500 parameters) or ``"small"``.
    residual, period, statistics, gaps
        Predict the change over ``"seasonal"`` (the input ``period`` frames before the
        target), ``"climatology"`` (the mean of the inputs of the target's season) or
        ``"last"`` (the last input) instead of the frame, and the input
        normalisation ``(mean, std)``, and whether missing input frames are flagged; see
        :class:`~xglacier.models.ForecastModel`. With a residual the linear head starts at
        zero (the untrained model is the reference).

    Examples
    --------
    >>> import torch
    >>> m = SALSTM(preset="small", patch_size=8)
    >>> m(torch.zeros(2, 4, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    """

    #: checkpoints written before ``feedback`` existed fed frames back as they were
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {**ForecastModel.LEGACY_CONFIG, "feedback": "linear"}

    def __init__(self, *, patch_size: int | None = None, n_in: int | None = None,
                 n_out: int | None = None, hidden: int | None = None, layers: int | None = None,
                 heads: int | None = None, dropout: float | None = None,
                 preset: str | None = None, residual: str | None = None, period: int = 4,
                 statistics: Sequence[float] | None = None, feedback: str = "tanh",
                 gaps: bool = False) -> None:
        kw = resolve_preset("SALSTM", preset, PRESETS, dict(
            patch_size=patch_size, n_in=n_in, n_out=n_out, hidden=hidden, layers=layers,
            heads=heads, dropout=dropout), _DEFAULTS)
        patch_size, n_in, n_out = kw["patch_size"], kw["n_in"], kw["n_out"]
        pix = patch_size * patch_size
        hidden = kw["hidden"] or pix
        layers, heads = kw["layers"], kw["heads"]
        dropout = float(check_number("SALSTM", "dropout", kw["dropout"], low=0, high=1))
        if hidden % heads:
            raise ParameterError(f"SALSTM: hidden={hidden} is not divisible by heads={heads}")
        super().__init__(patch_size=patch_size, n_in=n_in, n_out=n_out, hidden=hidden,
                         layers=layers, heads=heads, dropout=dropout,
                         residual=residual, period=period, statistics=statistics, gaps=gaps,
                         feedback=check_choice("SALSTM", "feedback", feedback, FEEDBACKS))
        self.feedback = feedback
        self.encoder = nn.LSTM(pix, hidden, num_layers=layers, batch_first=True,
                               dropout=dropout if layers > 1 else 0.0)
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.head = nn.Linear(n_in * hidden, pix)
        self._zero_start(self.head)
        self.embed = nn.Linear(pix, hidden) if hidden != pix else None
        self.drop = nn.Dropout(dropout)

    def _predict(self, x: torch.Tensor, steps: int, targets: torch.Tensor | None,
                 teacher_forcing: float) -> torch.Tensor:
        b, p = x.shape[0], self.patch_size
        states, _ = self.encoder(x.reshape(b, self.n_in, p * p))
        out = []
        for k in range(steps):
            att, _ = self.attention(states, states, states, need_weights=False)
            frame = self.head(self.drop(att.reshape(b, -1)))
            out.append(frame)
            fed = targets[:, k].reshape(b, p * p) if self._use_truth(
                targets, teacher_forcing, self.training) else frame
            token = self.embed(fed) if self.embed is not None else fed
            if self.feedback == "tanh":
                token = torch.tanh(token)
            states = torch.cat([states[:, 1:], token[:, None]], dim=1)
        return torch.stack(out, dim=1).reshape(b, steps, p, p)
