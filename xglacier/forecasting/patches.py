"""Patch engine: sample plans over a (time, y, x) cube, gathering, leak-free splits.

A :class:`PatchSet` describes every (n_in + n_out)-frame window of ``size`` x ``size``
patches without materialising them: samples are gathered on demand by a Numba kernel
from the cube held once in memory (a Parvati-size cube of 36 composites is 92 MB; its
~170,000 samples would be 13 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import dask.array as dsa
import numpy as np
import xarray as xr

from .._validate import check_choice, check_flag, check_int, check_number, check_time
from .._windows import window_starts
from ..errors import DimensionError, InputError, NaNInPatchError, ParameterError
from .axes import north_up, time_step
from .history import invented_frames
from .kernels import gather_patches
from .splits import frames_needed, space_split, time_split

if TYPE_CHECKING:
    from ..nn.batches import BatchLoader


def positions(n: int, size: int, stride: int, *, edge: bool = True) -> np.ndarray:
    """Patch origins along one axis of length ``n``; with ``edge`` the last patch ends at ``n``.

    Examples
    --------
    >>> positions(800, 50, 10).size
    76
    >>> positions(105, 50, 25).tolist()
    [0, 25, 50, 55]
    """
    return window_starts(n, size, stride, end="flush" if edge else "inside")


@dataclass(frozen=True)
class PatchPlan:
    """Where every sample comes from: ``samples[i] = (t0, y0, x0)``.

    Inputs are frames ``t0 .. t0 + n_in - 1`` and targets the next ``n_out`` frames, over
    rows ``y0 .. y0 + size - 1`` and columns ``x0 .. x0 + size - 1``.
    """

    size: int
    stride: int
    n_in: int
    n_out: int
    shape: tuple[int, int, int]  # (time, y, x) of the cube
    samples: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, index: np.ndarray) -> PatchPlan:
        return PatchPlan(self.size, self.stride, self.n_in, self.n_out, self.shape,
                         self.samples[np.asarray(index)])

    def footprint(self, which: Literal["inputs", "targets", "all"] = "all") -> np.ndarray:
        """Boolean (time, y, x) mask of the pixels the samples touch (for leak checks)."""
        mask = np.zeros(self.shape, bool)
        lo = {"inputs": 0, "targets": self.n_in, "all": 0}[which]
        hi = {"inputs": self.n_in, "targets": self.n_in + self.n_out,
              "all": self.n_in + self.n_out}[which]
        s = self.size
        for t0, y0, x0 in self.samples:
            mask[t0 + lo : t0 + hi, y0 : y0 + s, x0 : x0 + s] = True
        return mask


def make_plan(shape: tuple[int, int, int], size: int, stride: int, n_in: int, n_out: int, *,
              edge: bool = True, times: Sequence[int] | None = None) -> PatchPlan:
    """Plan every window of ``n_in + n_out`` frames at every patch position.

    Examples
    --------
    >>> len(make_plan((36, 800, 800), 50, 10, 4, 4))  # 29 windows x 76 x 76 positions
    167504
    """
    nt, ny, nx = shape
    ys, xs = positions(ny, size, stride, edge=edge), positions(nx, size, stride, edge=edge)
    ts = np.arange(nt - (n_in + n_out) + 1) if times is None else np.asarray(times, np.int64)
    t, y, x = np.meshgrid(ts, ys, xs, indexing="ij")
    samples = np.stack([t.ravel(), y.ravel(), x.ravel()], axis=1).astype(np.int64)
    return PatchPlan(size, stride, n_in, n_out, (nt, ny, nx), samples)


class PatchSet:
    """Lazy set of (inputs, targets) patch samples from a ``(time, y, x)`` DataArray.

    Build it with :func:`patches` (or ``da.glacier.patches(...)``). Nothing is computed
    until a sample is asked for; then the cube is loaded once (``load``) and samples are
    gathered from it.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> cube = xr.DataArray(np.arange(10 * 8 * 8, dtype="f4").reshape(10, 8, 8),
    ...                     dims=("time", "y", "x"),
    ...                     coords={"time": pd.date_range("2020-01-01", periods=10, freq="MS")})
    >>> ps = patches(cube, size=4, stride=2, n_in=2, n_out=1)
    >>> len(ps), ps[0][0].shape, ps[0][1].shape
    (72, (2, 4, 4), (1, 4, 4))
    """

    def __init__(self, da: xr.DataArray, plan: PatchPlan, *, nan: str = "raise",
                 fill_value: float = 0.0) -> None:
        self.da = da
        self.plan = plan
        self.nan = nan
        self.fill_value = float(fill_value)
        self._cube: np.ndarray | None = None
        self._parent: PatchSet | None = None  # subsets share their parent's loaded cube

    # -- basic protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.plan)

    def __repr__(self) -> str:
        p = self.plan
        return (f"<PatchSet {len(self)} samples: {p.n_in} -> {p.n_out} frames of "
                f"{p.size}x{p.size}, stride {p.stride}, cube {p.shape}>")

    @property
    def size(self) -> int:
        return self.plan.size

    @property
    def n_in(self) -> int:
        return self.plan.n_in

    @property
    def n_out(self) -> int:
        return self.plan.n_out

    def load(self) -> np.ndarray:
        """The cube as a float32 NumPy array (computed once, shared by subsets)."""
        if self._cube is None:
            if self._parent is not None:
                self._cube = self._parent.load()
            else:
                data = self.da.data
                arr = data.compute() if isinstance(data, dsa.Array) else np.asarray(data)
                self._cube = np.ascontiguousarray(arr, dtype=np.float32)
        return self._cube

    def _with(self, plan: PatchPlan) -> PatchSet:
        out = PatchSet(self.da, plan, nan=self.nan, fill_value=self.fill_value)
        out._cube, out._parent = self._cube, self
        return out

    def subset(self, index: Sequence[int] | np.ndarray) -> PatchSet:
        """The samples at ``index`` (positions or a boolean mask), e.g. the windows that
        forecast one year: ``ps.subset(ps.plan.samples[:, 0] == t0)``."""
        return self._with(self.plan.subset(index))

    def gather(self, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs ``(k, n_in, size, size)`` and targets ``(k, n_out, size, size)`` of samples."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"sample index out of range for a PatchSet of {len(self)} samples")
        idx = np.where(idx < 0, idx + len(self), idx)
        cube = self.load()
        p = self.plan
        x = np.empty((idx.size, p.n_in, p.size, p.size), np.float32)
        y = np.empty((idx.size, p.n_out, p.size, p.size), np.float32)
        gather_patches(cube, p.samples[idx], p.size, p.n_in, p.n_out, x, y)
        if self.nan == "fill":
            np.nan_to_num(x, copy=False, nan=self.fill_value)
            np.nan_to_num(y, copy=False, nan=self.fill_value)
        elif np.isnan(x).any() or np.isnan(y).any():
            bad = idx[np.isnan(x).any(axis=(1, 2, 3)) | np.isnan(y).any(axis=(1, 2, 3))]
            t0, y0, x0 = p.samples[bad[0]]
            raise NaNInPatchError(
                f"PatchSet.gather: {len(bad)} sample(s) of variable {self.da.name!r} contain NaN, the "
                f"first at time index {t0}, y0={y0}, x0={x0}; fill the gaps first (fill_gaps, "
                "composite) or build the PatchSet with nan='fill'"
            )
        return x, y

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.gather([i])
        return x[0], y[0]

    def input_gaps(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(k, n_in)`` booleans: which input frames of the samples were never observed.

        They are the frames :func:`xglacier.composite` interpolated (its ``interpolated``
        coordinate along ``time``); without that coordinate, none.

        Examples
        --------
        >>> import numpy as np, pandas as pd, xarray as xr
        >>> cube = xr.DataArray(np.zeros((6, 4, 4), "f4"), dims=("time", "y", "x"), coords={
        ...     "time": pd.date_range("2020", periods=6, freq="3MS"),
        ...     "interpolated": ("time", [0, 1, 0, 0, 0, 0])})
        >>> patches(cube, size=4, stride=4, n_in=2, n_out=1).input_gaps([0, 1, 2]).tolist()
        [[False, True], [True, False], [False, False]]
        """
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        return invented_frames(self.da)[self.plan.samples[idx, 0][:, None] + np.arange(self.n_in)]

    # -- torch ---------------------------------------------------------------------------
    def to_torch(self, *, batch_size: int = 100, shuffle: bool = False, seed: int | None = None,
                 drop_last: bool = False, gaps: bool = False, climate: bool = False,
                 period: int = 4) -> BatchLoader:
        """Iterable of float32 ``torch`` tensor batches ``(inputs, targets)``; with ``gaps=True``
        the boolean ``(k, n_in)`` :meth:`input_gaps` of the batch third; with ``climate=True``
        the gaps third and the ``(k, n_out, size, size)`` season means of the targets over every
        year before the window's first target fourth (``period`` frames per year, see
        :mod:`xglacier.forecasting.history`).

        Each batch is gathered straight from the cube; nothing else is kept in memory.
        """
        from ..nn.batches import BatchLoader  # late: torch loads on first use
        from .gaps import GapSource

        with_climate = check_flag("to_torch", "climate", climate)
        source = (GapSource(self, climate=with_climate, period=period)
                  if check_flag("to_torch", "gaps", gaps) or with_climate else self)
        return BatchLoader(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)

    # -- splits --------------------------------------------------------------------------
    def split(
        self,
        *,
        by: Literal["time", "space"] = "time",
        test: float = 0.2,
        val: float = 0.1,
        block: int | None = None,
        gap: int | None = None,
        seed: int = 0,
    ) -> tuple[PatchSet, PatchSet, PatchSet]:
        """Leak-free (train, val, test) subsets.

        ``by="time"``: the last frames hold the test targets, the ones before them the
        validation targets; no training window reaches a validation or test target frame,
        no validation window a test target frame (test inputs may use earlier frames, as a
        real forecast would). ``by="space"``: the grid is cut into square blocks of
        ``block`` pixels (default ``4 * size``) given at random to the three splits; a
        sample belongs to a split only if its patch, widened by ``gap`` pixels (default
        ``size``), lies in that split's blocks, so patches of different splits are at least
        ``gap`` pixels apart. Fractions are of time windows (time) or of blocks (space).

        Examples
        --------
        >>> import numpy as np, pandas as pd, xarray as xr
        >>> cube = xr.DataArray(np.zeros((20, 16, 16), "f4"), dims=("time", "y", "x"),
        ...     coords={"time": pd.date_range("2020-01-01", periods=20, freq="MS")})
        >>> train, val, test = patches(cube, size=8, stride=4, n_in=2, n_out=2).split(by="time")
        >>> int(train.plan.samples[:, 0].max() + 4) <= int(test.plan.samples[:, 0].min() + 2)
        True
        """
        func = "PatchSet.split"
        check_choice(func, "by", by, ("time", "space"))
        test = check_number(func, "test", test, low=0, high=1, low_open=True, high_open=True)
        val = check_number(func, "val", val, low=0, high=1, high_open=True)
        if test + val >= 1:
            raise ParameterError(f"{func}: test={test}, val={val}; expected fractions with test + val < 1")
        block = check_int(func, "block", block, low=1, allow_none=True)
        gap = check_int(func, "gap", gap, low=0, allow_none=True)
        seed = check_int(func, "seed", seed, low=0)
        if by == "time":
            idx = time_split(self.plan, test, val)
        else:
            idx = space_split(self.plan, test, val, block or 4 * self.size,
                                    self.size if gap is None else gap, seed)
        for name, ix in zip(("train", "val", "test"), idx, strict=True):
            if name != "val" and ix.size == 0:
                if by == "time":
                    p = self.plan
                    raise InputError(
                        f"{func}: by='time' left the {name} set empty: the cube has {p.shape[0]} frames; "
                        f"a time split of {p.n_in} + {p.n_out}-frame windows with test={test}, val={val} "
                        f"first has training and test windows at {frames_needed(p, test, val)} frames; "
                        "use a longer series (or fewer frames per window, or other fractions)"
                    )
                raise InputError(
                    f"{func}: by={by!r} left the {name} set empty; use a larger scene, smaller "
                    "blocks or other fractions"
                )
        return tuple(self._with(self.plan.subset(ix)) for ix in idx)

def patches(
    da: xr.DataArray,
    *,
    size: int = 50,
    stride: int = 10,
    n_in: int = 4,
    n_out: int = 4,
    edge: bool = True,
    nan: Literal["raise", "fill"] = "raise",
    fill_value: float = 0.0,
    drop_interpolated: bool = True,
) -> PatchSet:
    """Sample plan of ``n_in`` -> ``n_out`` frame patches over a ``(time, y, x)`` cube.

    The paper's setting: 50x50 patches, stride 10, 4 frames in and 4 out, over 3-month
    NDSI composites. Nothing is computed here.

    Parameters
    ----------
    da
        ``(time, y, x)`` DataArray, NumPy or Dask backed, on one regular time step (a
        missing period raises :class:`~xglacier.errors.TimeAxisError`). A cube with ``y``
        ascending or ``x`` descending is turned north-up and east-right, as
        :func:`~xglacier.forecast` shows the model every scene: ``PatchSet.da`` is that cube.
    size, stride
        Patch side and step between patch origins (pixels).
    n_in, n_out
        Input and target frames of a sample (consecutive).
    edge
        Add a last row/column of patches flush with the bottom/right edge when the stride
        does not land there, so that every pixel is covered.
    nan
        ``"raise"``: gathering a sample with NaN raises :class:`NaNInPatchError`;
        ``"fill"``: NaN becomes ``fill_value``.
    drop_interpolated
        Leave out every window with a target frame that :func:`xglacier.composite`
        interpolated (its ``interpolated`` coordinate: the period had no scene). Such a frame
        was never observed: a model trained on it learns the interpolation, and a score
        against it scores an invented truth. Input frames may be interpolated, as they will
        be when the model forecasts. Without the coordinate every window is kept.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> cube = xr.DataArray(np.zeros((36, 800, 800), "f4"), dims=("time", "y", "x"),
    ...     coords={"time": pd.date_range("2013-01-01", periods=36, freq="3MS")})
    >>> ps = cube.glacier.patches(size=50, stride=10, n_in=4, n_out=4)
    >>> len(ps)
    167504
    """
    if not isinstance(da, xr.DataArray):
        raise InputError(f"patches: expected a (time, y, x) DataArray, got {type(da).__name__}")
    if da.dims != ("time", "y", "x"):
        raise DimensionError(f"patches: variable {da.name!r} has dimensions {da.dims}; "
                             "expected ('time', 'y', 'x')")
    check_time(da, func="patches")
    size, stride, n_in, n_out = (check_int("patches", label, value, low=1) for label, value in
                                 (("size", size), ("stride", stride), ("n_in", n_in), ("n_out", n_out)))
    edge = check_flag("patches", "edge", edge)
    check_choice("patches", "nan", nan, ("raise", "fill"))
    fill_value = check_number("patches", "fill_value", fill_value)
    nt, ny, nx = da.shape
    if size > min(ny, nx):
        raise InputError(f"patches: size={size} is larger than the scene of variable {da.name!r} "
                         f"({ny} x {nx} pixels)")
    if nt < n_in + n_out:
        raise InputError(f"patches: variable {da.name!r} has {nt} frames; a sample needs "
                         f"n_in + n_out = {n_in + n_out}")
    time_step("patches", da)  # a window must not span a missing period
    da = north_up(da)  # trained as forecast() will show them scenes
    drop_interpolated = check_flag("patches", "drop_interpolated", drop_interpolated)
    times = None
    if drop_interpolated and "interpolated" in da.coords and da["interpolated"].dims == ("time",):
        invented = np.asarray(da["interpolated"].values, bool)
        starts = np.arange(nt - (n_in + n_out) + 1)
        times = [t for t in starts if not invented[t + n_in: t + n_in + n_out].any()]
        if not times:
            raise InputError(f"patches: every window of variable {da.name!r} has an interpolated target "
                             "frame (coordinate 'interpolated'); pass drop_interpolated=False to use them")
    plan = make_plan(da.shape, size, stride, n_in, n_out, edge=edge, times=times)
    return PatchSet(da, plan, nan=nan, fill_value=fill_value)
