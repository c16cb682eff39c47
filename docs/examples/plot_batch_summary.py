"""
Many glaciers: a batch run and its summary
==========================================

:func:`xglacier.run_glaciers` takes a table of glacier outlines and runs the per-glacier
pipeline (clean, align, NDSI composites, surface velocity, a glacier map per year) as one
Dask task per glacier, writing each glacier's products and status to an output folder that
a rerun resumes. Here three synthetic glaciers, each with its own folder of Landsat-named
GeoTIFFs, run on a small in-process Dask cluster; the summary table it returns (also
``OUT/summary.csv``) gives the mapped area per year, the median speeds on and off the
glacier and the seconds each glacier took. See the user guide page *Many glaciers* for
clusters, failures and resuming.
"""

import shutil
import tempfile
from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

import xglacier
from xglacier.batch import BatchConfig
from xglacier.models import NDSIRule

root = Path(tempfile.mkdtemp(prefix="xglacier-batch-"))
CODES = {"green": "SR_B3", "swir16": "SR_B6", "nir08": "SR_B5", "qa_pixel": "QA_PIXEL"}

# %%
# Three glaciers, each a folder of scenes named like USGS Landsat files, and their outlines
# (here the generator's true glacier, in lon/lat as an RGI file would have them).
ids, outlines, true_speed = [], [], []
for k, seed in enumerate((2, 5, 7)):
    gid = f"G{k + 1}"
    cube, truth = xglacier.synthetic_cube(shape=(64, 64), start="2018-01-01", end="2021-01-01", seed=seed,
                                          origin=(734460.0 + 3000 * k, 3568110.0), ice_speed=100.0 + 50 * k)
    # late-summer scenes only: snow-free, the season both the velocity and the maps need
    cube = cube.sel(time=cube.time.dt.month.isin([8, 9]))
    folder = root / "scenes" / gid
    folder.mkdir(parents=True)
    for t in cube.time.values:
        day = pd.Timestamp(t).strftime("%Y%m%d")
        for band, code in CODES.items():
            cube[band].sel(time=t).rio.to_raster(folder / f"LC08_L2SP_147038_{day}_20210101_02_T1_{code}.TIF")
    ice = (truth.glacier_class.isel(time=-1) > 0).astype("uint8").rio.write_crs(truth.rio.crs)
    ids.append(gid)
    true_speed.append(float(truth.speed.where(ice > 0).compute().median()))  # to compare with, below
    outlines.append(xglacier.polygonize(ice).geometry.union_all())
outlines = gpd.GeoDataFrame({"RGIId": ids}, geometry=outlines, crs=cube.rio.crs).to_crs("EPSG:4326")


# %%
# The glacier maps come from a segmentation checkpoint. A trained U-Net would go here
# (see *Segmentation models*); to stay cheap this one is the NDSI > 0.4 rule as a model
# (``xglacier.models.NDSIRule``: no training, a checkpoint like any other).
rule = xglacier.save_model(NDSIRule(channels=["ndsi"]), root / "rule")
config = BatchConfig(local_scenes=str(root / "scenes" / "{id}"), products=("flow", "segment"),
                     composite_freq="YS", composite_how="median", segment_months=(8, 9),
                     segment_model=str(rule), segment_tile=64, segment_overlap=8)

# %%
# Run them on a Dask cluster: here one worker thread in this process, which starts faster
# than worker processes (one thread: NetCDF writes in one process are serialised anyway).
# On a laptop ``workers=4`` starts worker processes instead; on a cluster pass its
# ``client=``.
with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
        Client(cluster) as client:
    table = xglacier.run_glaciers(outlines, root / "out", config=config, client=client, progress=False)
areas = sorted(c for c in table.columns if c.startswith("area_km2_"))
connected = [f"connected_{c}" for c in areas]
print(table[["id", "status", "task_seconds", "outline_area_km2", *connected, *areas, "speed_glacier_m_a",
             "speed_stable_m_a"]].round(2).to_string())
for gid, text in zip(table["id"], table["warnings"].fillna(""), strict=True):
    print(gid, "warnings:", text[:100] or "none")

# %%
# The summary: one row per glacier. ``area_km2_<year>`` is what the rule maps in each
# glacier's box (the outline plus ``buffer_m``: seasonal snow beside the glacier counts
# too, pale bars); ``connected_area_km2_<year>`` keeps the polygons that touch the outline
# (the glacier as mapped, with the snow fields attached to it; solid bars). Here the late
# summer snow lies against the glaciers, so both are close and three to four times the
# outline: the NDSI rule cannot tell snow from ice (a trained U-Net can). The speeds
# are medians over the outline and over the stable ground around it, beside the
# generator's true median speed on the glacier. Glaciers this small (2 km long, a few
# pixels wide) are narrower than the optical-flow window: it finds motion above the stable
# ground's noise but well under the true speed, and the summary's ``warnings`` column says
# so (``NarrowGlacierWarning``). The flow example checks the velocity itself.
years = areas
fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
x = np.arange(len(table))
width = 0.8 / len(years)
for i, col in enumerate(years):
    at = x + width * (i - (len(years) - 1) / 2)
    bars = axes[0].bar(at, table[f"connected_{col}"], width=width, label=col[-4:])
    axes[0].bar(at, table[col], width=width, color=bars.patches[0].get_facecolor(), alpha=0.3)
axes[0].plot(x, table["outline_area_km2"], "k_", ms=40, mew=2, label="outline")
axes[0].set_ylabel("mapped area (km²)")
axes[0].set_ylim(0, 1.3 * table[years].to_numpy().max())
axes[0].legend(fontsize=8, ncols=4, loc="upper center")
axes[1].bar(x - 0.2, table["speed_glacier_m_a"], width=0.4, label="measured, on the glacier")
axes[1].bar(x + 0.2, table["speed_stable_m_a"], width=0.4, label="measured, stable ground (noise)")
axes[1].plot(x - 0.2, [true_speed[ids.index(i)] for i in table["id"]], "k_", ms=25, mew=2,
             label="true, on the glacier")
axes[1].set_ylabel("median speed (m/yr)")
axes[1].legend(fontsize=8, loc="upper left")
colours = {"done": "tab:green", "failed": "tab:red", "error": "tab:orange", "killed": "k"}
axes[2].bar(x, table["task_seconds"], color=[colours.get(s, "0.5") for s in table["status"]])
axes[2].set_ylabel("seconds per glacier (green: done)")
for ax in axes:
    ax.set_xticks(x, table["id"])
axes[0].set_title("area per year")
axes[1].set_title("surface speed")
axes[2].set_title(f"{(table['status'] == 'done').sum()} of {len(table)} glaciers done")
shutil.rmtree(root)

plt.show()
