"""
Mapping clean and debris-covered ice
====================================

A feature cube (bands, indices, elevation and slope; Baraka et al., 2020) of one late-summer
scene, a pixel classifier trained on *other* synthetic glaciers, the class map it predicts
for this one beside the truth, and the polygons that :func:`xglacier.polygonize` traces
from it (holes kept). The U-Net of :mod:`xglacier.models` is used the same way, through
:func:`xglacier.segment`; the random forest keeps this page quick to build.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

import xglacier


def late_summer(seed):
    """Features and class truth of the clearest late-summer scene of one synthetic glacier."""
    cube, truth = xglacier.synthetic_cube(shape=(128, 128), seed=seed, start="2020-08-01",
                                          end="2020-10-01", max_shift=0.0)
    k = int(truth.clear_sky.mean(("y", "x")).argmax("time"))
    scene = cube.drop_vars("qa_pixel").isel(time=[k])
    return scene, xglacier.features(scene, dem=truth.dem).compute(), truth.glacier_class.isel(time=k).values


train = [late_summer(seed)[1:] for seed in (11, 12, 13)]
classes = ["background", "clean_ice", "debris_covered_ice"]
forest = xglacier.PixelClassifier("random_forest", seed=0).fit(
    [f for f, _ in train], [lab for _, lab in train], classes=classes, n_samples=20_000)

scene, feats, truth = late_summer(5)                  # a glacier the classifier never saw
label = forest.predict(feats).label
polygons = label.glacier.polygonize(min_area=4 * 900.0)
iou = xglacier.evaluate_segmentation(truth, label.values, classes=classes).loc["all", "iou"]

rgb = np.clip(np.stack([scene[b].isel(time=0).values for b in ("red", "green", "blue")], -1) * 1.3, 0, 1)
extent = [float(label.x.min()) - 15, float(label.x.max()) + 15, float(label.y.min()) - 15,
          float(label.y.max()) + 15]
cmap = ListedColormap([(0, 0, 0, 0), (0.1, 0.45, 1.0, 0.55), (1.0, 0.5, 0.0, 0.6)])
fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), constrained_layout=True)
for ax, lab, title in ((axes[0], truth, "truth"), (axes[1], label.values, "random forest")):
    ax.imshow(rgb, extent=extent)
    ax.imshow(np.ma.masked_equal(lab, 255), cmap=cmap, vmin=0, vmax=2, extent=extent, interpolation="nearest")
    ax.set_title(f"{title}: clean ice (blue), debris (orange)", fontsize=10)
axes[2].imshow(rgb, extent=extent)
for name, colour in (("clean_ice", "tab:blue"), ("debris_covered_ice", "tab:orange")):
    polygons[polygons.class_name == name].boundary.plot(ax=axes[2], color=colour, linewidth=1.2)
axes[2].set_title(f"{len(polygons)} polygons; IoU clean {iou['clean_ice']:.2f}, "
                  f"debris {iou['debris_covered_ice']:.2f}", fontsize=10)
for ax in axes:
    ax.locator_params(nbins=4)
