"""Convolutional LSTM encoder-decoder (3x3 kernels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..._validate import check_int
from ...errors import ParameterError
from ...nn.registry import register_model
from .base import ForecastModel, resolve_preset

#: The paper's Table 2 (842,233 parameters) and a CPU-sized variant.
PRESETS = {
    "paper": dict(patch_size=50, n_in=4, n_out=4, encoder=(64, 64, 24), decoder=(24, 64, 24),
                  kernel=3),
    "small": dict(patch_size=20, n_in=4, n_out=4, encoder=(16, 16, 8), decoder=(8, 16, 8),
                  kernel=3),
}

_DEFAULTS = dict(patch_size=50, n_in=4, n_out=4, encoder=(64, 64, 24), decoder=(24, 64, 24), kernel=3)


def _widths(label: str, value: Sequence[int]) -> list[int]:
    """Channel widths of the encoder or decoder layers: a non-empty sequence of integers >= 1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ParameterError(f"ConvLSTM: {label}={value!r}; expected a non-empty sequence of integers >= 1")
    return [check_int("ConvLSTM", f"{label}[{i}]", w, low=1) for i, w in enumerate(value)]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell: the four gates from one convolution over [input, hidden]."""

    def __init__(self, in_ch: int, hid_ch: int, kernel: int) -> None:
        super().__init__()
        self.hid_ch = hid_ch
        self.conv = nn.Conv2d(in_ch + hid_ch, 4 * hid_ch, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        i, f, o, g = torch.chunk(self.conv(torch.cat([x, h], dim=1)), 4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


@register_model
class ConvLSTM(ForecastModel):
    """ConvLSTM encoder-decoder: the encoder reads the frames, the decoder unrolls.

    The decoder's input at each step is its own previous top hidden state (the encoder's
    top state at the first step); each decoder layer starts from the state of the encoder
    layer with the same number of channels, counted from the top (zeros if none). A 3x3
    convolution maps the decoder's top state to a frame. The decoder does not read frames,
    so teacher forcing does not apply to this model.

    ``residual`` (``"seasonal"``, ``"climatology"``, ``"last"`` or None), ``period``, ``statistics`` (input
    normalisation) and ``gaps`` are those of :class:`~xglacier.models.ForecastModel`; with a residual
    the output convolution starts at zero, so the untrained model forecasts the reference.

    Examples
    --------
    >>> import torch
    >>> ConvLSTM(preset="small", patch_size=8)(torch.zeros(1, 4, 8, 8)).shape
    torch.Size([1, 4, 8, 8])
    """

    def __init__(self, *, patch_size: int | None = None, n_in: int | None = None,
                 n_out: int | None = None, encoder: Sequence[int] | None = None,
                 decoder: Sequence[int] | None = None, kernel: int | None = None,
                 preset: str | None = None, residual: str | None = None,
                 period: int = 4, statistics: Sequence[float] | None = None, gaps: bool = False) -> None:
        kw = resolve_preset("ConvLSTM", preset, PRESETS, dict(
            patch_size=patch_size, n_in=n_in, n_out=n_out, encoder=encoder, decoder=decoder,
            kernel=kernel), _DEFAULTS)
        enc, dec = _widths("encoder", kw["encoder"]), _widths("decoder", kw["decoder"])
        k = kw["kernel"]
        super().__init__(patch_size=kw["patch_size"], n_in=kw["n_in"], n_out=kw["n_out"],
                         encoder=enc, decoder=dec, kernel=k, residual=residual, period=period,
                         statistics=statistics, gaps=gaps)
        enc_in, dec_in = [1, *enc[:-1]], [enc[-1], *dec[:-1]]
        self.enc = nn.ModuleList(ConvLSTMCell(i, h, k) for i, h in zip(enc_in, enc, strict=True))
        self.dec = nn.ModuleList(ConvLSTMCell(i, h, k) for i, h in zip(dec_in, dec, strict=True))
        self.out = nn.Conv2d(dec[-1], 1, k, padding=k // 2)
        self._zero_start(self.out)
        # which encoder layer seeds each decoder layer (same width, searched from the top)
        self._seed = [next((j for j in reversed(range(len(enc))) if enc[j] == h), None) for h in dec]

    def _predict(self, x: torch.Tensor, steps: int, targets: torch.Tensor | None,
                 teacher_forcing: float) -> torch.Tensor:
        b, p = x.shape[0], self.patch_size
        zeros = [(x.new_zeros(b, c.hid_ch, p, p), x.new_zeros(b, c.hid_ch, p, p)) for c in self.enc]
        states = zeros
        for t in range(self.n_in):
            inp = x[:, t : t + 1]
            new = []
            for cell, st in zip(self.enc, states, strict=True):
                h, c = cell(inp, st)
                new.append((h, c))
                inp = h
            states = new
        dstates = [states[j] if j is not None else
                   (x.new_zeros(b, cell.hid_ch, p, p), x.new_zeros(b, cell.hid_ch, p, p))
                   for j, cell in zip(self._seed, self.dec, strict=True)]
        inp = states[-1][0]
        out = []
        for _ in range(steps):
            layer_in = inp
            new = []
            for cell, st in zip(self.dec, dstates, strict=True):
                h, c = cell(layer_in, st)
                new.append((h, c))
                layer_in = h
            dstates = new
            inp = layer_in
            out.append(self.out(layer_in)[:, 0])
        return torch.stack(out, dim=1)
