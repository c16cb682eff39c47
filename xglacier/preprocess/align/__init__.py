"""Co-registration of scenes with OpenCV's Enhanced Correlation Coefficient (ECC).

:func:`estimate_ecc` finds one warp per scene against a template, lazily; :func:`apply_warps`
resamples every band of every scene with its warp; :func:`align_ecc` does both. Both
estimating functions take their options as one :class:`ECCOptions`.

Layout: :mod:`.frames` holds the per-frame numerics (plain NumPy/OpenCV on one frame or
one in-memory block), :mod:`.options` the shared options, :mod:`.estimate` and
:mod:`.warp` the Dask/xarray wiring. Numba kernels stay in :mod:`xglacier.preprocess.kernels`.
"""

from ...errors import AlignmentWarning
from .estimate import DEFAULT_ALIGN_BANDS, estimate_ecc
from .frames import MOTIONS
from .options import ECCOptions
from .warp import align_ecc, apply_warps

__all__ = ["DEFAULT_ALIGN_BANDS", "MOTIONS", "AlignmentWarning", "ECCOptions", "align_ecc",
           "apply_warps", "estimate_ecc"]
