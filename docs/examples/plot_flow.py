"""
Surface velocity from optical flow
==================================

:func:`xglacier.flow` runs Farneback dense optical flow (Müller et al., 2023) between
consecutive yearly late-summer composites of the near-infrared band and returns east and north velocity in
m/yr, with a noise floor measured on stable ground. The synthetic glacier flows down its
valley at a known speed; the left panel shows the arrows of one pair over the image, the
right one the measured speed against the truth.
"""

import matplotlib.pyplot as plt
import numpy as np

import xglacier

cube, truth = xglacier.synthetic_cube(shape=(128, 128), start="2018-01-01", end="2021-01-01", seed=0)
# late-summer scenes only: snow-free, so that consecutive years show the same surface
summer = cube.sel(time=cube.time.dt.month.isin([8, 9]))
aligned = summer.glacier.mask_clouds().glacier.align_ecc().glacier.fill_gaps(bands=["nir08"])
nir = aligned.nir08.glacier.composite(freq="YS").compute()
stable = (truth.glacier_class == 0).all("time").compute()   # ground that never moves
velocity = nir.glacier.flow(stable=stable).compute()
# the pair whose glacier signal stands highest above the noise of stable ground
pair = int((velocity.speed_signal / velocity.speed_noise).argmax("pair"))

fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
xglacier.plot_flow(velocity, pair=pair, image=nir.isel(time=pair + 1), ax=ax, step=6)
ax.set_title(f"velocity, {str(velocity.start.values[pair])[:4]} to {str(velocity.end.values[pair])[:4]}")

on_ice = (truth.glacier_class > 0).all("time").compute()
measured = velocity.speed.isel(pair=pair).where(on_ice).values.ravel()
true = truth.speed.compute().where(on_ice).values.ravel()
keep = np.isfinite(measured) & np.isfinite(true)
bx.hexbin(true[keep], measured[keep], gridsize=30, mincnt=1, cmap="viridis")
top = float(np.nanmax(true))
bx.plot([0, top], [0, top], color="white", lw=1)
bx.set_xlabel("true speed (m/yr)")
bx.set_ylabel("measured speed (m/yr)")
noise = float(velocity.speed_noise.isel(pair=pair))
bx.set_title(f"on the glacier; noise floor on stable ground {noise:.0f} m/yr")
