"""The options of ECC co-registration: one frozen object shared by ``estimate_ecc`` and
``align_ecc``, validated in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..._validate import check_choice, check_int, check_number
from ...errors import ParameterError
from .frames import MOTIONS

#: The coarse first steps :attr:`ECCOptions.coarse` accepts.
COARSE = ("phase", "opencv", None)


@dataclass(frozen=True)
class ECCOptions:
    """How :func:`estimate_ecc` and :func:`align_ecc` estimate one warp per scene.

    Both functions take it as ``options=``; each field can also be given to them as a
    keyword, which overrides that field (``align_ecc(cube, motion="affine")`` is
    ``align_ecc(cube, options=ECCOptions(motion="affine"))``). The defaults are
    xglacier's, measured in ``benchmarks/bench_align.py`` against the paper's setup
    (single-scale ECC, homography, up to 10000 iterations, eps 1e-4, OpenCV's Gaussian
    pre-filter of size 5, template = mean of the unaligned frames): 3.7x faster on
    2048x2048 frames with the same accuracy. Values are checked when the object is made.

    Parameters
    ----------
    motion
        ``"translation"`` (right for co-registration, the default), ``"euclidean"``,
        ``"affine"`` or ``"homography"`` (the paper's choice).
    refine
        How many times the template is rebuilt as the median of the aligned frames and the
        frames aligned again, starting from their previous warps (``True`` = once, default
        2). The paper's template (mean of unaligned frames) is blurred by the
        misregistration itself; two rebuilds bring the error to a few hundredths of a
        pixel. ``0`` keeps the first estimate (the paper).
    downsample
        The rounds before the last (the first estimate and all but the last refinement)
        run on frames block-averaged by this factor (default 2), which cuts their cost by
        its square; the last round, at full resolution, starts from their warps and has
        the last word. ``1`` runs every round at full resolution. Ignored without
        refinement or on frames smaller than 128 times the factor. The block-averaged
        rounds stop after at most 30 ECC iterations.
    iterations, eps
        ECC termination: at most ``iterations`` per estimate (default 200; the paper
        10000), or a correlation increment below ``eps`` (default 1e-5; the paper 1e-4).
    highpass
        Sigma (pixels, default 1.5) of a NaN-aware Gaussian high-pass applied to template
        and scenes before the estimate, so that seasonal snow and illumination do not pull
        the alignment; ``None`` uses raw values (the paper).
    gauss_size
        OpenCV's Gaussian pre-filter size (odd; default 1 = none; the paper and OpenCV: 5).
    coarse, pyramid_levels
        First estimate for each scene, which widens ECC's capture range (1-2 pixels) to
        large shifts: ``"phase"`` (phase correlation, a translation; the default),
        ``"opencv"`` (``cv2.findTransformECCMultiScale`` with ``pyramid_levels`` levels,
        default 3; in OpenCV 5.0 it failed on zero-mean input and ignored masks in our
        tests) or ``None`` (the paper). The full-resolution masked estimate always has the
        last word; refinement rounds start from the previous round's warps instead.
    max_shift
        Largest plausible displacement (pixels, default 10) of the frame corners or
        centre; a larger solution is rejected like a non-converged one.
    min_correlation
        Solutions with a lower correlation (default 0.2) are rejected (pure noise, wrong
        lock).
    min_valid
        Smallest fraction of valid pixels (default 0.1) for a scene to be aligned at all.
    few_scenes
        With fewer scenes than this (default 10), ``reference="median"`` starts from
        ``"best"`` instead: the median of a few misregistered frames keeps no common fine
        texture, and each scene would lock onto its own share of it. ``0`` never switches.

    Examples
    --------
    >>> opts = ECCOptions(motion="affine", refine=1)
    >>> opts.motion, opts.refine, opts.iterations
    ('affine', 1, 200)
    >>> ECCOptions(iterations=0)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: ECCOptions: iterations=0; expected an integer >= 1
    """

    motion: Literal["translation", "euclidean", "affine", "homography"] = "translation"
    refine: int = 2
    downsample: int = 2
    iterations: int = 200
    eps: float = 1e-5
    highpass: float | None = 1.5
    gauss_size: int = 1
    coarse: Literal["phase", "opencv"] | None = "phase"
    pyramid_levels: int = 3
    max_shift: float = 10.0
    min_correlation: float = 0.2
    min_valid: float = 0.1
    few_scenes: int = 10

    def __post_init__(self) -> None:
        for name, value in checked_fields("ECCOptions", as_dict(self)).items():
            object.__setattr__(self, name, value)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ECCOptions))


def as_dict(options: ECCOptions) -> dict[str, Any]:
    """The fields of ``options`` by name, in declaration order."""
    return {name: getattr(options, name) for name in FIELDS}


def checked_fields(func: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of ``values`` checked and normalised; errors start with ``func``."""
    out = dict(values)
    out["motion"] = check_choice(func, "motion", values["motion"], MOTIONS)
    out["coarse"] = check_choice(func, "coarse", values["coarse"], COARSE)
    refine = values["refine"]
    # a number of rounds, or True/False for one or none (documented), so bools are kept here
    out["refine"] = (int(refine) if isinstance(refine, (bool, np.bool_))
                     else check_int(func, "refine", refine, low=0))
    for name, low in (("downsample", 1), ("iterations", 1), ("pyramid_levels", 1),
                      ("gauss_size", 0), ("few_scenes", 0)):
        out[name] = check_int(func, name, values[name], low=low)
    if out["gauss_size"] % 2 == 0 and out["gauss_size"] != 0:
        raise ParameterError(f"{func}: gauss_size={out['gauss_size']}; expected an odd size (or 0)")
    for name, bounds in (("eps", {"low": 0, "low_open": True}),
                         ("max_shift", {"low": 0, "low_open": True}),
                         ("min_correlation", {"high": 1}),
                         ("min_valid", {"low": 0, "low_open": True, "high": 1})):
        out[name] = float(check_number(func, name, values[name], **bounds))
    highpass = check_number(func, "highpass", values["highpass"], low=0, low_open=True, allow_none=True)
    out["highpass"] = None if highpass is None else float(highpass)
    return out


def resolve_options(func: str, options: Any, overrides: Mapping[str, Any],
                    keywords: Iterable[str]) -> ECCOptions:
    """``options`` (default :class:`ECCOptions()`) with the keyword ``overrides`` applied.

    ``keywords`` are the function's own keywords, named in the error for an unknown one.
    """
    if options is None:
        options = ECCOptions()
    elif not isinstance(options, ECCOptions):
        raise ParameterError(f"{func}: options is a {type(options).__name__}; expected an ECCOptions or None")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ParameterError(
            f"{func}: unknown keyword(s) {', '.join(map(repr, unknown))}; expected "
            f"{', '.join(keywords)} or a field of ECCOptions ({', '.join(FIELDS)})"
        )
    if not overrides:
        return options
    return ECCOptions(**checked_fields(func, {**as_dict(options), **overrides}))
