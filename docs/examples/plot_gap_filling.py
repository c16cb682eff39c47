"""
Gap filling, before and after
=============================

Clouds and sensor gaps leave holes in every scene. :func:`xglacier.fill_gaps` fills them with
the 5x5 weighted average of Müller et al. (2023), in passes, until no gap is left; valid
pixels never change. The synthetic sample knows the value under every gap, so the filled
scene can be compared with the truth.
"""

import matplotlib.pyplot as plt
import numpy as np

import xglacier

cube, truth = xglacier.synthetic_cube(shape=(96, 96), start="2020-06-01", end="2020-09-01", seed=3)
masked = cube.glacier.mask_clouds(bands=["green"])
# a scene with about a quarter of its pixels missing
missing = masked.green.isnull().mean(("y", "x")).compute()
t = int(abs(missing - 0.25).argmin("time"))
before = masked.green.isel(time=t).compute()
after = xglacier.fill_gaps(before)
true = truth.true_green.isel(time=t).compute()

fig, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
kw = dict(vmin=float(true.quantile(0.02)), vmax=float(true.quantile(0.98)), cmap="gray")
before.plot.imshow(ax=axes[0], add_colorbar=False, **kw)
axes[0].set_title(f"masked: {float(missing[t]):.0%} missing")
after.plot.imshow(ax=axes[1], add_colorbar=False, **kw)
axes[1].set_title("after fill_gaps")
err = (after - true).where(before.isnull())
err.plot.imshow(ax=axes[2], cmap="RdBu", center=0, cbar_kwargs={"label": "filled - true"})
axes[2].set_title(f"error on filled pixels (RMSE {float(np.sqrt((err ** 2).mean())):.3f})")
for ax in axes:
    ax.set_aspect("equal")
    ax.locator_params(nbins=4)
