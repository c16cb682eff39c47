"""
Patch plan and leak-free splits
===============================

:func:`xglacier.patches` describes every (inputs, targets) window of square patches without
materialising them. A split by space gives square blocks of the grid to the training,
validation and test sets, and keeps patches of different sets at least one patch apart;
a split by time gives the last frames to the test targets. Both are shown on quarterly NDSI
composites of the synthetic sample.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import xglacier

cube, truth = xglacier.synthetic_cube(shape=(128, 128), start="2016-01-01", end="2021-01-01", seed=2)
ndsi = cube.glacier.mask_clouds().glacier.fill_gaps().glacier.ndsi().glacier.composite(freq="3MS")
ndsi = ndsi.compute()
ps = ndsi.glacier.patches(size=8, stride=8, n_in=4, n_out=4)
colours = {"train": "C0", "val": "C1", "test": "C3"}

fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
ax.imshow(ndsi.isel(time=-1).values, cmap="gray", vmin=-1, vmax=1)
for name, part in zip(colours, ps.split(by="space", block=32, seed=1), strict=True):
    for y0, x0 in np.unique(part.plan.samples[:, 1:], axis=0):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), 8, 8, fill=False, ec=colours[name], lw=0.8))
    ax.plot([], [], color=colours[name], label=f"{name}: {len(part)} samples")
ax.set_title("split by space (blocks of 32 px, patches 8 px)")
ax.legend(loc="upper left", bbox_to_anchor=(0, -0.02), fontsize=8, ncols=3)
ax.set_axis_off()

# by time: which frames are inputs and targets of each set's windows
n_in, n_out = 4, 4
for row, (name, part) in enumerate(zip(colours, ps.split(by="time"), strict=True)):
    starts = np.unique(part.plan.samples[:, 0])
    for j, t0 in enumerate(starts):
        r = row + 0.8 * j / len(starts)  # one line per window, stacked
        bx.plot([t0, t0 + n_in - 1], [r, r], color=colours[name], alpha=0.3, lw=3)
        bx.plot([t0 + n_in, t0 + n_in + n_out - 1], [r, r], color=colours[name], lw=1.5)
bx.set_yticks(np.arange(3) + 0.4, list(colours))
bx.set_xticks(range(ndsi.sizes["time"]), [str(t)[:7] for t in ndsi.time.values], rotation=90)
bx.set_title("split by time (wide: input frames; thin: target frames)")
bx.set_ylim(3, -0.2)
