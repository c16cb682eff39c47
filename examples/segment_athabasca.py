"""Segment real HLS crops of Athabasca Glacier with the demo's U-Net and the NDSI rule.

A smoke test on real data: the U-Net was trained on the synthetic sample only (run
``xglacier demo`` first, which writes ``demo-output/unet_small.json``), so its figure says
how far synthetic training carries, not how good a U-Net trained on real outlines is. It
does not carry far: the synthetic worlds lie about 2 km higher than Athabasca, and
``segment`` says so with an ``OutOfDistributionWarning`` naming the elevation channel.

The L30 scene is used as delivered, with its gap of 897 nodata pixels (``--fill-gaps``
fills it first): pixels with a missing input get no class (label 255, ``NODATA``) and
count as misses in the scores. ``--png`` draws the scene, the outline and both label maps,
with nodata in grey.

Run (the crops are in ``shared/data/athabasca`` beside the project, not in it)::

    python examples/segment_athabasca.py --data ../shared/data/athabasca \\
        --model demo-output/unet_small --png athabasca-segmentation.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rioxarray
import xarray as xr

import xglacier
from xglacier.segmentation.classes import NODATA


def glacier_map(label: np.ndarray) -> np.ndarray:
    """Glacier (1, clean or debris-covered ice) vs background (0); NODATA stays NODATA."""
    return np.where(label == NODATA, NODATA, (label > 0) & (label != NODATA)).astype(np.uint8)


def glacier_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    # NODATA predictions count as misses of the true class, never as glacier or background
    cm = xglacier.confusion_matrix(truth.astype(np.uint8), pred, 2)
    return float(xglacier.scores(cm, classes=["background", "glacier"]).loc["glacier", "iou"])


def draw(path: Path, cube: xr.Dataset, truth: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    """RGB with the outline, then each label map: background, clean, debris, nodata (grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    rgb = np.stack([cube[b].isel(time=0).values for b in ("red", "green", "blue")], -1)
    gap = np.isnan(rgb).any(axis=-1)
    rgb = np.clip(np.nan_to_num(rgb), 0, 1)
    rgb[gap] = (1.0, 0.0, 1.0)   # magenta: no data in the scene itself
    colours = ListedColormap(["#3b6e2f", "#5fc8f0", "#a0522d", "#9a9a9a"])
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(4.2 * (1 + len(maps)), 4.6))
    axes[0].imshow(rgb)
    axes[0].contour(truth, levels=[0.5], colors="yellow", linewidths=1)
    axes[0].set_title("HLS L30 2020-08-16 (nodata magenta), outline")
    for ax, (name, label) in zip(axes[1:], maps.items(), strict=True):
        shown = np.where(label == NODATA, 3, label).astype(float)
        ax.imshow(shown, cmap=colours, vmin=-0.5, vmax=3.5, interpolation="nearest")
        ax.contour(truth, levels=[0.5], colors="yellow", linewidths=1)
        ax.set_title(f"{name}: {100 * (label == NODATA).mean():.1f} % nodata")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.colors]
    fig.legend(handles, ["background", "clean ice / glacier", "debris-covered ice", "nodata (no class)"],
               loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the Athabasca crops")
    parser.add_argument("--model", default="demo-output/unet_small", help="U-Net checkpoint")
    parser.add_argument("--fill-gaps", action="store_true", help="fill the L30 gap before segmenting")
    parser.add_argument("--png", type=Path, default=None, help="write a picture of the label maps here")
    args = parser.parse_args()

    # one HLS L30 scene: bands named and scaled from the file names (B05 -> nir08, DN * 1e-4)
    cube = xglacier.open_scenes(sorted(args.data.glob("athabasca_2020229_B0*_L30.tif")))
    if args.fill_gaps:
        cube = xglacier.fill_gaps(cube)
    dem = rioxarray.open_rasterio(args.data / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    feats = xglacier.features(cube, dem=dem).compute()
    truth = xglacier.rasterize(args.data / "athabasca_outline.shp", like=feats).values > 0
    missing = np.isnan(feats.values).any(axis=0)
    print(f"Athabasca HLS L30 2020-08-16: {feats.sizes['y']}x{feats.sizes['x']} px, outline "
          f"{truth.sum() * 900 / 1e6:.1f} km2 rasterized, {missing.sum()} px with a missing input")

    rule = xglacier.ndsi_rule(feats).label.values
    print(f"  NDSI > 0.4 rule, glacier vs background IoU: {glacier_iou(truth, rule):.3f}")

    model = xglacier.load_model(args.model, expect=feats)
    seg = xglacier.segment(feats, model, tile=128, overlap=32).compute()   # warns: elevation
    unet = glacier_map(seg.label.values)
    print(f"  U-Net trained on synthetic scenes only, glacier vs background IoU: "
          f"{glacier_iou(truth, unet):.3f}; {(unet == NODATA).sum()} px without a class")
    if args.png is not None:
        draw(args.png, cube, truth, {"NDSI > 0.4": rule, "U-Net (synthetic)": seg.label.values})
        print(f"  picture: {args.png}")


if __name__ == "__main__":
    main()
