"""
Surface velocity from optical flow
==================================

:func:`xglacier.flow` runs Farneback dense optical flow (Müller et al., 2023) between
consecutive yearly late-summer composites of the near-infrared band and returns east and
north velocity in m/yr, with a noise floor measured on stable ground. The synthetic glacier
flows down its valley at a known speed. Left: the arrows of one pair on the glacier over the
image, coloured by speed (``plot_flow(..., hue="speed")``); middle: the true velocity on the
same arrows' grid; right: measured against true speed, pixel by pixel.
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
on_ice = (truth.glacier_class > 0).all("time").compute()

fig, (ax, tx, bx) = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
# arrows only on the ice: NaN arrows are not drawn
on_glacier = velocity.assign({v: velocity[v].where(on_ice) for v in ("dx", "dy", "speed")})
step, top = 6, 160
image = nir.isel(time=pair + 1)
length = {"angles": "xy", "scale_units": "xy", "scale": 0.7, "width": 0.005}  # 1.4 x a year's move
xglacier.plot_flow(on_glacier, pair=pair, image=image, ax=ax, step=step, hue="speed", clim=(0, top),
                   **length)
ax.set_title(f"measured, {str(velocity.start.values[pair])[:4]} to {str(velocity.end.values[pair])[:4]}")

# the truth on the same grid of arrows, in pixels per year (30 m pixels; rows grow southward)
rows, cols = np.mgrid[step // 2:128:step, step // 2:128:step]
ice = on_ice.values[rows, cols]
true_u, true_v = (truth[c].values[rows, cols] / 30.0 for c in ("velocity_x", "velocity_y"))
tx.imshow(image, cmap="gray")
arrows = tx.quiver(cols[ice], rows[ice], true_u[ice], -true_v[ice], truth.speed.values[rows, cols][ice],
                   cmap="plasma", clim=(0, top), **length)
fig.colorbar(arrows, ax=tx, label="true speed (m yr-1)", shrink=0.8)
tx.set_title(f"true velocity (up to {float(truth.speed.max()):.0f} m/yr)")

measured = velocity.speed.isel(pair=pair).where(on_ice).values.ravel()
true = truth.speed.compute().where(on_ice).values.ravel()
keep = np.isfinite(measured) & np.isfinite(true)
bx.hexbin(true[keep], measured[keep], gridsize=30, mincnt=1, cmap="viridis")
bx.plot([0, top], [0, top], color="0.4", lw=1)
bx.set_xlabel("true speed (m/yr)")
bx.set_ylabel("measured speed (m/yr)")
noise = float(velocity.speed_noise.isel(pair=pair))
bx.set_title(f"on the glacier; noise floor on stable ground {noise:.0f} m/yr")

plt.show()
