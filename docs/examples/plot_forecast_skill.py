"""
Forecast, truth, error and where the model has skill
====================================================

A small SA-LSTM-H (Müller et al., 2023) with the seasonal residual (it learns the change
over the same quarter a year earlier) is trained on the first years of quarterly NDSI
composites and forecasts the last year. The panels compare one quarter of that forecast
with what the scenes showed, and map the per-pixel skill against seasonal persistence
over the four quarters: blue where the model is better, red where it is worse. This is a
synthetic sample: it says how the tools are used, not how well a model does on real
glaciers.
"""

import matplotlib.pyplot as plt
import torch

import xglacier
from xglacier.models import SALSTM

torch.manual_seed(0)
cube, truth = xglacier.synthetic_cube(shape=(64, 64), start="2015-01-01", end="2022-01-01", seed=4)
clean = cube.glacier.filter_scenes(max_cloud=20, max_missing=0.5).glacier.mask_clouds()
ndsi = clean.glacier.fill_gaps().glacier.ndsi().glacier.composite(freq="3MS")
ndsi = ndsi.compute()
past, future = ndsi.isel(time=slice(None, -4)), ndsi.isel(time=slice(-4, None))

train, val, _ = past.glacier.patches(size=20, stride=10, n_in=4, n_out=4).split(by="time", test=0.1)
model = SALSTM(preset="small", residual="seasonal")
xglacier.fit(model, train, val, epochs=12, progress=False)
fc = past.glacier.forecast(model, steps=4).compute()            # (lead_time, y, x)
seasonal = past.isel(time=slice(-4, None))                      # the same quarters a year earlier
skill = xglacier.skill_map(fc, future, seasonal)

fig, axes = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
k = 2  # the third quarter ahead: late summer, when the glacier shows
fc.isel(lead_time=k).plot.imshow(ax=axes[0], vmin=-1, vmax=1, cmap="RdBu", add_colorbar=False)
axes[0].set_title(f"forecast {str(future.time.values[k])[:7]}")
future.isel(time=k).plot.imshow(ax=axes[1], vmin=-1, vmax=1, cmap="RdBu", cbar_kwargs={"label": "NDSI"})
axes[1].set_title("observed")
(fc.isel(lead_time=k) - future.isel(time=k).values).plot.imshow(
    ax=axes[2], vmin=-0.5, vmax=0.5, cmap="PuOr", cbar_kwargs={"label": "forecast - observed"})
axes[2].set_title("error")
skill.plot.imshow(ax=axes[3], vmin=-1, vmax=1, cmap="RdBu", cbar_kwargs={"label": "skill"})
better = float((skill > 0).mean())
axes[3].set_title(f"skill vs seasonal persistence\n({better:.0%} of pixels better)")
for ax in axes:
    ax.set_aspect("equal")
    ax.locator_params(nbins=3)
