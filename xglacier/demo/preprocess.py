"""Demo part 1: cleaning, alignment, gap filling, NDSI composites and surface motion."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import FlowNoiseWarning
from ..io.store import to_netcdf
from ..motion import flow, plot_flow
from ..preprocess.align import apply_warps, estimate_ecc
from ..preprocess.composite import composite
from ..preprocess.gapfill import fill_gaps
from ..preprocess.indices import ndsi
from ..preprocess.masks import mask_clouds, snow_mask
from ..preprocess.scenes import filter_scenes


def _gapfill_rmse(before: xr.Dataset, after: xr.Dataset, truth: xr.Dataset, band: str):
    """RMSE of filled values where the cube had nodata but the sky was clear."""
    t = truth.sel(time=after.time)
    where = (t.nodata > 0) & (t.clear_sky > 0) & after[band].notnull() & before[band].isnull()
    err = (after[band] - t[f"true_{band}"]).where(where)
    rmse = np.sqrt((err**2).mean())
    return rmse, where.sum()


def _alignment_error(est: xr.Dataset, truth: xr.Dataset) -> tuple[float, float]:
    """Mean and largest error (px) of the estimated shifts, up to the template's offset."""
    ok = est.ecc_converged.values
    ex = est.ecc_shift_x.values[ok] - truth.shift_x.values[ok]
    ey = est.ecc_shift_y.values[ok] - truth.shift_y.values[ok]
    err = np.hypot(ex - np.median(ex), ey - np.median(ey))
    return float(err.mean()), float(err.max())


def _flow_png(out: Path, vel: xr.Dataset, image: xr.DataArray) -> Path:
    """Arrows of the per-pixel median displacement over all pairs, on a median image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = vel.median("pair").expand_dims(pair=1).assign_coords(
        start=("pair", vel.start.values[:1]), end=("pair", vel.end.values[-1:]))
    fig, ax = plt.subplots(figsize=(6, 6), constrained_layout=True)
    plot_flow(med, image=image, ax=ax, step=8, scale=20)
    ax.set_title("median surface displacement per quarter (NIR composites)")
    path = out / "flow.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _quicklooks(out: Path, cube: xr.Dataset, filled: xr.Dataset, comp: xr.DataArray,
                mask: xr.DataArray) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    gaps = cube.green.isnull().sum(("y", "x")).values
    k = int(np.argmax(gaps))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), constrained_layout=True)
    for ax, ds, title in ((axes[0], cube, "masked"), (axes[1], filled, "gap-filled")):
        rgb = np.stack([ds[b].isel(time=k).values for b in ("red", "green", "blue")], -1)
        ax.imshow(np.clip(np.nan_to_num(rgb, nan=1.0) * 1.3, 0, 1))
        ax.set_title(f"{title} {str(ds.time.values[k])[:10]}")
        ax.axis("off")
    paths.append(out / "gapfill.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

    for name, arr, cmap, vmin in (("ndsi_composites.png", comp, "RdBu", -1),
                                  ("snow_mask.png", mask, "Blues", 0)):
        n = arr.sizes["time"]
        cols = min(n, 8)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.1 * rows), squeeze=False,
                                 constrained_layout=True)
        for ax in axes.flat:
            ax.axis("off")
        for i in range(n):
            ax = axes.flat[i]
            ax.imshow(arr.isel(time=i).values, vmin=vmin, vmax=1, cmap=cmap)
            flag = " (interp.)" if bool(arr.interpolated[i]) else ""
            ax.set_title(str(arr.time.values[i])[:7] + flag, fontsize=8)
        paths.append(out / name)
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    return paths


def run_preprocess_demo(cube: xr.Dataset, truth: xr.Dataset, out: Path) -> dict[str, Any]:
    """Filter -> cloud mask -> ECC alignment -> gap fill -> NDSI -> 3-month composites -> flow.

    Writes ``composites.nc`` and the quicklooks into ``out``; returns the summary figures
    and, under ``"arrays"``, the computed products the other demo parts start from.
    """
    kept = filter_scenes(cube, max_cloud=20, max_missing=0.5)
    # Persisting the kept scenes spares re-rendering them in every alignment round.
    masked = mask_clouds(kept).persist()
    # Aligned before gap filling, so that clouds and gaps are masked out of the estimate.
    est = estimate_ecc(masked)
    aligned = apply_warps(masked, est)
    filled = fill_gaps(aligned)
    index = ndsi(filled)
    comp = composite(index, freq="3MS")
    mask = snow_mask(comp, threshold=0.3)
    # Ice texture survives in reflectance composites, not in NDSI (a band ratio): the
    # surface velocity is measured on quarterly composites of the aligned NIR band.
    # never-glaciated ground does not move: the noise floor of each pair is measured there
    stable = (truth.glacier_class == 0).all("time")
    vel = flow(composite(aligned["nir08"], freq="3MS"), stable=stable)
    # The truth, moved by the same warps, to score the gap filling on the aligned grid.
    t_kept = truth.sel(time=kept.time)
    t_al = apply_warps(
        xr.Dataset({
            "true_green": t_kept.true_green, "true_swir16": t_kept.true_swir16,
            "nodata": t_kept.nodata.astype("u1"), "clear_sky": t_kept.clear_sky.astype("u1"),
            "glacier_class": t_kept.glacier_class,
        }),
        est,
    )
    rmse_g, n_g = _gapfill_rmse(aligned, filled, t_al, "green")
    rmse_s, _ = _gapfill_rmse(aligned, filled, t_al, "swir16")
    gaps_before = aligned.green.isnull().sum()
    # One pass over the graph for everything the summary and the files need; the pairs whose
    # motion is not above their noise floor are counted in the summary rather than warned about.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowNoiseWarning)
        computed = dask.compute(
            est, aligned, filled, comp, mask, vel, rmse_g, n_g, rmse_s, gaps_before, t_al.glacier_class
        )
    (est_c, aligned_c, filled_c, comp_c, mask_c, vel_c, rmse_g, n_g, rmse_s, gaps_before,
     classes_c) = computed
    align_err = _alignment_error(est_c, t_kept)
    glacier = truth.glacier_class.isel(time=-1).values > 0
    fast = glacier & (truth.speed.values > 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels never seen stay NaN
        u_med = np.nanmedian(vel_c.u.values, axis=0)
        v_med = np.nanmedian(vel_c.v.values, axis=0)
    result = xr.Dataset({"ndsi": comp_c, "snow_mask": mask_c})
    result.attrs = {
        "title": "xglacier demo: 3-month NDSI composites of the synthetic sample",
        "Conventions": "CF-1.8",
        "history": comp_c.attrs.get("history", ""),
    }
    nc = to_netcdf(result, out / "composites.nc")
    pngs = _quicklooks(out, aligned_c, filled_c, comp_c, mask_c)
    pngs.append(_flow_png(out, vel_c, filled_c.nir08.median("time")))
    return {
        "scenes": int(cube.sizes["time"]),
        "kept": int(kept.sizes["time"]),
        "dropped": int(cube.sizes["time"] - kept.sizes["time"]),
        "gaps_before": int(gaps_before),
        "gaps_left": int(filled_c["unfilled_green"].sum()),
        "rmse_green": float(rmse_g),
        "rmse_swir16": float(rmse_s),
        "n_checked": int(n_g),
        "periods": int(comp_c.sizes["time"]),
        "interpolated_periods": [str(t)[:10] for t in comp_c.time.values[comp_c.interpolated.values]],
        "snow_fraction": float((mask_c > 0).mean()),
        "aligned": int(est_c.ecc_converged.sum()),
        "pairs": int(vel_c.sizes["pair"]),
        "above_noise": int(vel_c.above_noise.sum()),
        "speed_noise": float(vel_c.speed_noise.median()),
        "align_mean": align_err[0],
        "align_max": align_err[1],
        "flow_speed": float(np.nanmedian(np.hypot(u_med, v_med)[fast])),
        "true_speed": float(np.median(truth.speed.values[fast])),
        "flow_error": float(np.nanmedian(np.hypot(u_med - truth.velocity_x.values,
                                                  v_med - truth.velocity_y.values)[fast])),
        "files": [str(nc), *map(str, pngs)],
        # what each scene lacked before gap filling: the segmentation picks a clear scene by it
        "arrays": {"composites": comp_c, "classes": classes_c,
                   "filled": filled_c.assign_coords(missing=aligned_c.green.isnull().mean(("y", "x")))},
    }


def format_preprocess(s: dict[str, Any]) -> list[str]:
    """Report lines of the preprocessing part."""
    return [
        f"  scenes: {s['scenes']} acquired, {s['kept']} kept, {s['dropped']} dropped "
        "(cloud cover > 20 % or > 50 % missing)",
        f"  gap fill (green): {s['gaps_before']} masked/nodata pixels, {s['gaps_left']} left "
        "after 16 passes of the 5x5 weighted average",
        f"  filled vs truth under clear-sky nodata ({s['n_checked']} px): RMSE green "
        f"{s['rmse_green']:.4f}, swir16 {s['rmse_swir16']:.4f} (reflectance)",
        f"  NDSI 3-month composites: {s['periods']} periods, interpolated (no scene): "
        f"{', '.join(s['interpolated_periods']) or 'none'}",
        f"  ECC alignment: {s['aligned']} of {s['kept']} scenes aligned; shift error against the "
        f"truth: mean {s['align_mean']:.3f} px, largest {s['align_max']:.3f} px",
        f"  snow/ice (NDSI >= 0.3) covers {100 * s['snow_fraction']:.1f} % of composite pixels",
    ]


def format_motion(s: dict[str, Any]) -> list[str]:
    """Report lines of the surface-motion measurement."""
    return [
        f"  surface velocity (Farneback between quarterly NIR composites, per-pixel median "
        f"over {s['pairs']} pairs) on ice faster than 30 m/yr: median speed "
        f"{s['flow_speed']:.0f} m/yr (truth {s['true_speed']:.0f}), median vector error "
        f"{s['flow_error']:.0f} m/yr; noise floor over stable ground {s['speed_noise']:.0f} m/yr "
        f"(median of the pairs), {s['above_noise']} of {s['pairs']} pairs clearly above it",
    ]
