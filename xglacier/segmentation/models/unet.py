"""U-Net for clean-ice / debris-covered glacier segmentation, and two binary models combined.

:class:`UNet` follows the glacier-mapping paper's appendix: ``depth`` downsampling
levels (two 3x3 convolutions with ReLU, then 2x2 max-pooling), a bottleneck, and as many
upsampling levels (a 2x2 transposed convolution with stride 2, concatenation with the
encoder's features at that level, two 3x3 convolutions); 16 channels after the first
convolution, doubled at every level down to the bottleneck and halved on the way up;
spatial dropout (``Dropout2d``) after every block. The paper's preset is the default:
``depth=5, base_channels=16, dropout=0.3``.

:class:`CombinedBinary` is the paper's third set-up: a clean-ice model and a
debris-covered model trained separately as binary models, combined into background /
clean ice / debris probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..._validate import check_choice, check_int, check_number
from ...errors import InputError, ParameterError
from ...nn.registry import register_model, registered_models
from .base import SegmentationModel

__all__ = ["COMBINE_RULES", "CombinedBinary", "UNet"]

_PAD_MODES = ("reflect", "replicate", "zeros")


def _block(n_in: int, n_out: int, dropout: float, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions ('same' padding) with ReLU (batch norm before it), then spatial dropout."""
    layers: list[nn.Module] = []
    for a, b in ((n_in, n_out), (n_out, n_out)):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm))  # BN has the bias
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


@register_model
class UNet(SegmentationModel):
    """U-Net mapping ``(batch, channel, y, x)`` features to per-class logits of the same size.

    Any input size works: the input is padded to a multiple of ``2**depth`` (split
    between both sides, ``pad_mode``) and the output cropped back, so the output has the
    input's height and width, odd sizes included.

    Parameters
    ----------
    channels
        Names of the input channels, in order (any number).
    classes
        Names of the classes, background first (any number >= 2). The paper's set-ups:
        ``("background", "glacier")`` with ``binary_head=True``; ``("background",
        "clean_ice", "debris_covered_ice")``; two binary models in :class:`CombinedBinary`.
    depth
        Number of 2x2 max-poolings (and of transposed convolutions); paper: 5.
    base_channels
        Channels after the first convolution, doubled at every level; paper: 16.
    dropout
        Spatial dropout probability after every convolution block; paper: 0.3.
    binary_head
        One output channel with a sigmoid (two classes only).
    mean, std, patch_size
        See :class:`~xglacier.segmentation.models.SegmentationModel`.
    pad_mode
        How inputs are padded to a multiple of ``2**depth``: ``"reflect"`` (mirror
        without repeating the edge; ``"replicate"`` where the input is too small to
        mirror), ``"replicate"`` or ``"zeros"`` (the training mean, after normalisation).
    batch_norm
        Batch normalisation after every convolution (not in the paper, hence off by
        default): faster, steadier training at higher learning rates. In eval mode
        (inference) it is a fixed per-channel affine map, so tiled inference stays
        independent of the batch.

    Examples
    --------
    >>> import torch
    >>> bands = ["blue", "green", "red", "nir08", "swir16", "swir22", "ndsi", "ndwi",
    ...          "ndvi", "elevation", "slope"]
    >>> paper = UNet(bands, ["background", "clean_ice", "debris_covered_ice"])
    >>> paper.n_parameters()
    7776787
    >>> small = UNet(bands, ["background", "clean_ice", "debris_covered_ice"], depth=2,
    ...              base_channels=4).eval()
    >>> tuple(small(torch.zeros(1, 11, 37, 53)).shape)
    (1, 3, 37, 53)
    """

    def __init__(self, channels: Sequence[str], classes: Sequence[str], *, depth: int = 5,
                 base_channels: int = 16, dropout: float = 0.3, binary_head: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 patch_size: int = 512, pad_mode: str = "reflect", batch_norm: bool = False) -> None:
        name = type(self).__name__
        depth = check_int(name, "depth", depth, low=1)
        base = check_int(name, "base_channels", base_channels, low=1)
        dropout = check_number(name, "dropout", dropout, low=0, high=1, high_open=True)
        check_choice(name, "pad_mode", pad_mode, _PAD_MODES)
        super().__init__(channels, classes, mean=mean, std=std, patch_size=patch_size,
                         binary_head=binary_head, depth=depth, base_channels=base,
                         dropout=float(dropout), pad_mode=pad_mode, batch_norm=bool(batch_norm))
        self.depth, self.pad_mode = depth, pad_mode
        widths = [base * 2**level for level in range(depth + 1)]  # the last one: bottleneck
        self.down = nn.ModuleList()
        n_in = len(self.channels)
        for width in widths[:-1]:
            self.down.append(_block(n_in, width, dropout, bool(batch_norm)))
            n_in = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _block(widths[-2], widths[-1], dropout, bool(batch_norm))
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            self.up.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.up_blocks.append(_block(2 * widths[level], widths[level], dropout, bool(batch_norm)))
        self.head = nn.Conv2d(widths[0], self.out_channels, 1)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = -h % m, -w % m
        top, left = ph // 2, pw // 2
        pads = (left, pw - left, top, ph - top)  # torch order: last dim first
        if not (ph or pw):
            return x, pads
        mode = self.pad_mode
        if mode == "reflect" and (ph - top >= h or pw - left >= w):
            mode = "replicate"  # mirroring needs more pixels than the input has
        if mode == "zeros":
            return nn.functional.pad(x, pads, mode="constant", value=0.0), pads
        return nn.functional.pad(x, pads, mode=mode), pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, out_channels, y, x)`` of normalised features ``(batch, channel, y, x)``.

        Examples
        --------
        >>> import torch
        >>> model = UNet(["green", "swir16"], ["background", "glacier"], depth=3,
        ...              base_channels=2, binary_head=True)
        >>> tuple(model(torch.zeros(2, 2, 5, 6)).shape)
        (2, 1, 5, 6)
        """
        if x.ndim != 4 or x.shape[1] != len(self.channels):
            raise InputError(f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected "
                             f"(batch, {len(self.channels)} channels {list(self.channels)}, y, x)")
        h, w = x.shape[-2:]
        z, (left, _, top, _) = self._pad(x)
        skips = []
        for block in self.down:
            z = block(z)
            skips.append(z)
            z = self.pool(z)
        z = self.bottleneck(z)
        for upconv, block, skip in zip(self.up, self.up_blocks, reversed(skips), strict=True):
            z = block(torch.cat([skip, upconv(z)], dim=1))
        return self.head(z)[..., top:top + h, left:left + w]


#: How :class:`CombinedBinary` turns the clean-ice probability ``c`` and the debris
#: probability ``d`` into (background, clean ice, debris) probabilities.
COMBINE_RULES = {
    "debris_first": "(1 - c)(1 - d), c (1 - d), d: debris wherever its model fires, clean ice "
                    "where only the clean-ice model does",
    "normalised": "(1 - c)(1 - d), c (1 - d), d (1 - c), divided by their sum: independent models "
                  "conditioned on one class per pixel (both firing is a tie)",
}


@register_model
class CombinedBinary(SegmentationModel):
    """Two binary models (clean ice, debris-covered ice) combined into three classes.

    The paper's "two binary models" set-up: each part is a two-class
    :class:`SegmentationModel` (e.g. a :class:`UNet` with ``binary_head=True``) trained on
    its own (``tiles.binary("clean_ice")``, ``tiles.binary("debris_covered_ice")``); this
    module only combines their probabilities of the positive class, ``c`` and ``d``:

    - ``rule="debris_first"`` (default): ``P(debris) = d``, ``P(clean) = c (1 - d)``,
      ``P(background) = (1 - c)(1 - d)``. Where both models fire the pixel is debris:
      debris-covered tongues look like rock to a clean-ice model but the reverse (clean
      ice mistaken for debris) is rare, and debris is the class the paper finds hardest.
    - ``rule="normalised"``: ``(1 - c)(1 - d) : c (1 - d) : d (1 - c)`` normalised to sum
      to one, i.e. the two models taken as independent and conditioned on a pixel having
      one class; where both are certain it is a tie.

    Each part normalises the raw features with its own statistics, so ``forward`` (like
    ``predict_proba``) takes raw features; it returns log-probabilities (whose softmax
    is the probabilities). The model is not trained as a whole: train the parts.

    Parameters
    ----------
    clean, debris
        Two-class segmentation models with the same channels in the same order; or, as
        checkpoints store them, ``{"class": name, "config": {...}}`` dicts rebuilt from
        :func:`xglacier.nn.registered_models`.
    rule
        ``"debris_first"`` or ``"normalised"`` (see above and :data:`COMBINE_RULES`).
    classes
        Names of the three output classes; default ``("background", <clean's positive
        class>, <debris's positive class>)``.

    Examples
    --------
    >>> import torch
    >>> from xglacier.models import UNet
    >>> bands = ["green", "swir16", "elevation"]
    >>> clean = UNet(bands, ["background", "clean_ice"], depth=2, base_channels=4, binary_head=True)
    >>> debris = UNet(bands, ["background", "debris_covered_ice"], depth=2, base_channels=4,
    ...               binary_head=True)
    >>> both = CombinedBinary(clean, debris).eval()
    >>> both.classes
    ('background', 'clean_ice', 'debris_covered_ice')
    >>> p = both.predict_proba(torch.rand(1, 3, 8, 8))
    >>> tuple(p.shape), bool(torch.allclose(p.sum(dim=1), torch.ones(1, 8, 8)))
    ((1, 3, 8, 8), True)
    """

    def __init__(self, clean: SegmentationModel | Mapping[str, Any],
                 debris: SegmentationModel | Mapping[str, Any], *, rule: str = "debris_first",
                 classes: Sequence[str] | None = None) -> None:
        name = type(self).__name__
        parts = [_part(name, label, m) for label, m in (("clean", clean), ("debris", debris))]
        for label, part in zip(("clean", "debris"), parts, strict=True):
            if len(part.classes) != 2:
                raise ParameterError(f"{name}: {label} model has classes {list(part.classes)}; "
                                     "expected a binary model (background, positive class)")
        if parts[0].channels != parts[1].channels:
            raise ParameterError(f"{name}: the clean model's channels {list(parts[0].channels)} differ "
                                 f"from the debris model's {list(parts[1].channels)}; both must take the "
                                 "same features in the same order")
        check_choice(name, "rule", rule, sorted(COMBINE_RULES))
        if classes is None:
            classes = ("background", parts[0].classes[1], parts[1].classes[1])
        super().__init__(parts[0].channels, classes, patch_size=parts[0].patch_size)
        if len(self.classes) != 3:
            raise ParameterError(f"{name}: classes={list(self.classes)}; expected three names "
                                 "(background, clean ice, debris)")
        self.clean, self.debris = parts
        self.rule = rule
        # what rebuilds the model: the parts' classes and (live) configs, statistics included
        self.config = {
            "clean": {"class": type(self.clean).__name__, "config": self.clean.config},
            "debris": {"class": type(self.debris).__name__, "config": self.debris.config},
            "rule": rule, "classes": list(self.classes),
        }

    def set_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Refused: each part keeps its own statistics (set them on ``clean`` and ``debris``).

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> parts = [UNet(["green"], ["background", c], depth=1, base_channels=2) for c in "ab"]
        >>> CombinedBinary(*parts).set_statistics([0.0], [1.0])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        xglacier.errors.ParameterError: CombinedBinary: the statistics belong to the parts; call ...
        """
        raise ParameterError(f"{type(self).__name__}: the statistics belong to the parts; call "
                             "clean.set_statistics() and debris.set_statistics()")

    def training_statistics(self) -> tuple[list[float], list[float]] | None:
        """The clean part's training ``(mean, std)`` (both parts normally share their tiles).

        Examples
        --------
        >>> from xglacier.models import UNet
        >>> parts = [UNet(["dem"], ["background", c], depth=1, base_channels=2, mean=[4e3], std=[5e2])
        ...          for c in "ab"]
        >>> CombinedBinary(*parts).training_statistics()
        ([4000.0], [500.0])
        """
        return self.clean.training_statistics() or self.debris.training_statistics()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Only checks the shape: each part normalises the raw features itself.

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> parts = [UNet(["green"], ["background", c], depth=1, base_channels=2) for c in "ab"]
        >>> x = torch.tensor([[[[float("nan")]]]])
        >>> CombinedBinary(*parts).normalise(x).isnan().item()
        True
        """
        if x.ndim != 4 or x.shape[1] != len(self.channels):
            raise InputError(f"{type(self).__name__}: input of shape {tuple(x.shape)}; expected "
                             f"(batch, {len(self.channels)} channels {list(self.channels)}, y, x)")
        return x

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Background / clean / debris probabilities of raw features ``x``.

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> parts = [UNet(["green"], ["background", c], depth=1, base_channels=2) for c in "ab"]
        >>> tuple(CombinedBinary(*parts).predict_proba(torch.rand(2, 1, 3, 3)).shape)
        (2, 3, 3, 3)
        """
        x = self.normalise(x)
        c = self.clean.predict_proba(x)[:, 1]
        d = self.debris.predict_proba(x)[:, 1]
        if self.rule == "debris_first":
            return torch.stack([(1 - c) * (1 - d), c * (1 - d), d], dim=1)
        tiny = torch.finfo(c.dtype).tiny  # both models certain: a tie of clean and debris, not 0 / 0
        q = torch.stack([(1 - c) * (1 - d), c * (1 - d) + tiny, d * (1 - c) + tiny], dim=1)
        return q / q.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of raw features ``x`` (``probabilities`` turns them back).

        Examples
        --------
        >>> import torch
        >>> from xglacier.models import UNet
        >>> parts = [UNet(["green"], ["background", c], depth=1, base_channels=2) for c in "ab"]
        >>> both = CombinedBinary(*parts).eval()  # eval: no dropout
        >>> x = torch.rand(1, 1, 4, 4)
        >>> bool(torch.allclose(both.probabilities(both(x)), both.predict_proba(x)))
        True
        """
        p = self.predict_proba(x)
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def _part(name: str, label: str, model: Any) -> SegmentationModel:
    """A part given as a model, or as the ``{"class", "config"}`` dict a checkpoint stores."""
    if isinstance(model, Mapping):
        known = registered_models()
        cls = known.get(str(model.get("class")))
        config = model.get("config")
        if cls is None or not isinstance(config, Mapping):
            raise ParameterError(f"{name}: {label}={dict(model)!r}; expected a segmentation model or "
                                 f"{{'class': one of {sorted(known)}, 'config': {{...}}}}")
        model = cls(**config)
    if not isinstance(model, SegmentationModel):
        raise ParameterError(f"{name}: {label} is a {type(model).__name__}; expected a "
                             "SegmentationModel (e.g. a UNet with two classes)")
    return model
