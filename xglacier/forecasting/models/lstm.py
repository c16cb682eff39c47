"""LSTM encoder-decoder over flattened patches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..._validate import check_number
from ...nn.registry import register_model
from .base import ForecastModel, resolve_preset

#: The paper's Table 2 (300,120,000 parameters) and a CPU-sized variant.
PRESETS = {
    "paper": dict(patch_size=50, n_in=4, n_out=4, hidden=2500, layers=3, dropout=0.0),
    "small": dict(patch_size=20, n_in=4, n_out=4, hidden=400, layers=2, dropout=0.1),
}

_DEFAULTS = dict(patch_size=50, n_in=4, n_out=4, hidden=None, layers=3, dropout=0.0)


@register_model
class LSTMEncoderDecoder(ForecastModel):
    """Stacked LSTM encoder and decoder; the decoder reads its previous frame.

    The encoder's final states initialise the decoder, whose first input is the last
    input frame. With ``hidden == patch_size ** 2`` (the paper) the decoder's top hidden
    state is the predicted frame itself (an LSTM output lies in (-1, 1), the NDSI range);
    otherwise a linear layer maps it to a frame.

    ``residual`` (``"seasonal"``, ``"climatology"``, ``"last"`` or None), ``period``, ``statistics`` (input
    normalisation) and ``gaps`` are those of :class:`~xglacier.models.ForecastModel`; with a residual
    the decoder's head (or, when the state is the frame, a gain) starts at zero, so the
    untrained model forecasts the reference.

    Examples
    --------
    >>> import torch
    >>> LSTMEncoderDecoder(preset="small", patch_size=8)(torch.zeros(1, 4, 8, 8)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(self, *, patch_size: int | None = None, n_in: int | None = None,
                 n_out: int | None = None, hidden: int | None = None, layers: int | None = None,
                 dropout: float | None = None, preset: str | None = None, residual: str | None = None,
                 period: int = 4, statistics: Sequence[float] | None = None, gaps: bool = False) -> None:
        kw = resolve_preset("LSTMEncoderDecoder", preset, PRESETS, dict(
            patch_size=patch_size, n_in=n_in, n_out=n_out, hidden=hidden, layers=layers,
            dropout=dropout), _DEFAULTS)
        patch_size = kw["patch_size"]
        pix = patch_size * patch_size
        hidden, layers = kw["hidden"] or pix, kw["layers"]
        dropout = float(check_number("LSTMEncoderDecoder", "dropout", kw["dropout"], low=0, high=1))
        super().__init__(patch_size=patch_size, n_in=kw["n_in"], n_out=kw["n_out"],
                         hidden=hidden, layers=layers, dropout=dropout, residual=residual,
                         period=period, statistics=statistics, gaps=gaps)
        drop = dropout if layers > 1 else 0.0
        self.encoder = nn.LSTM(pix, hidden, num_layers=layers, batch_first=True, dropout=drop)
        self.decoder = nn.LSTM(pix, hidden, num_layers=layers, batch_first=True, dropout=drop)
        self.head = nn.Linear(hidden, pix) if hidden != pix else None
        # with a residual the output starts at 0: a zeroed head, or (the state is the frame) a gain
        self.gain = nn.Parameter(torch.zeros(())) if residual is not None and self.head is None else None
        if self.head is not None:
            self._zero_start(self.head)

    def _predict(self, x: torch.Tensor, steps: int, targets: torch.Tensor | None,
                 teacher_forcing: float) -> torch.Tensor:
        b, p = x.shape[0], self.patch_size
        seq = x.reshape(b, self.n_in, p * p)
        _, state = self.encoder(seq)
        inp = seq[:, -1:]
        out = []
        for k in range(steps):
            dec, state = self.decoder(inp, state)
            frame = dec[:, 0] if self.head is None else self.head(dec[:, 0])
            if self.gain is not None:
                frame = self.gain * frame
            out.append(frame)
            use = self._use_truth(targets, teacher_forcing, self.training)
            inp = (targets[:, k].reshape(b, 1, p * p) if use else frame[:, None])
        return torch.stack(out, dim=1).reshape(b, steps, p, p)
