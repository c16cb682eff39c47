"""
NDSI composites and the snow mask
=================================

Quarterly NDSI composites of the embedded synthetic sample, after cloud masking and gap
filling, and the paper's NDSI >= 0.3 snow/ice mask (Müller et al., 2023).
"""

import matplotlib.pyplot as plt

import xglacier

cube, truth = xglacier.synthetic_cube(shape=(96, 96), start="2020-01-01", end="2021-01-01", seed=0)
ndsi = cube.glacier.mask_clouds().glacier.fill_gaps().glacier.ndsi().glacier.composite(freq="3MS")
snow = ndsi.glacier.snow_mask(threshold=0.3)

fig, axes = plt.subplots(2, 4, figsize=(12, 6), constrained_layout=True)
for i, ax in enumerate(axes[0]):
    ndsi.isel(time=i).plot.imshow(ax=ax, vmin=-1, vmax=1, cmap="RdBu", add_colorbar=i == 3)
    ax.set_title(f"NDSI {str(ndsi.time.values[i])[:7]}")
for i, ax in enumerate(axes[1]):
    snow.isel(time=i).plot.imshow(ax=ax, vmin=0, vmax=1, cmap="Blues", add_colorbar=i == 3)
    ax.set_title("snow mask")
for ax in axes.flat:
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
