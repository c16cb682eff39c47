"""Preprocess the synthetic sample lazily and check the result against its truth.

Run: ``python examples/preprocess_sample.py``
"""

from __future__ import annotations

import numpy as np

import xglacier


def main() -> None:
    cube, truth = xglacier.open_sample()
    kept = cube.glacier.filter_scenes(max_cloud=20, max_missing=0.5)
    print(f"{cube.sizes['time']} scenes, {kept.sizes['time']} kept")

    # Everything below is a Dask graph until .compute()
    ndsi = kept.glacier.mask_clouds().glacier.fill_gaps().glacier.ndsi()
    quarterly = ndsi.glacier.composite(freq="3MS")
    snow = quarterly.glacier.snow_mask(threshold=0.3, keep_values=False)
    snow = snow.compute()

    # Compare the snow/ice mask of summer composites with the glacier classes of the truth:
    # NDSI sees clean ice but not debris-covered ice (what the segmentation model is for).
    summer = snow.sel(time=snow.time.dt.month == 7).values
    classes = truth.glacier_class.isel(time=-1).values
    for code, label in ((1, "clean ice"), (2, "debris-covered ice"), (0, "background")):
        share = np.nanmean(summer[:, classes == code])
        print(f"{label:>20}: flagged snow/ice in Jul-Sep composites {share:.1%}")
    print("interpolated quarters:", [str(t)[:7] for t in snow.time.values[snow.interpolated.values]])


if __name__ == "__main__":
    main()
