"""Segmentation part of ``xglacier demo``: train a small U-Net on the sample's class truth,
segment its clearest late-summer scene, score it beside the baselines, write labels and polygons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..segmentation.classes import NODATA

#: The small U-Net of the demo and how it is trained (the paper's preset is depth 5 with 16
#: base channels on 512 px tiles, plain Dice, lr 1e-4; on a few small synthetic worlds and
#: a CPU budget of a minute this set-up learned best: see docs/segmentation-models.md).
SMALL_UNET = {"depth": 4, "base_channels": 8, "dropout": 0.1, "batch_norm": True}
TRAINING = {"loss": "dice+ce", "class_weights": [1.0, 3.0, 4.0], "lr": 3e-3, "batch_size": 8}


def training_scenes(seeds: Sequence[int], shape: tuple[int, int] = (200, 200), per_seed: int = 2,
                    min_clear: float = 0.9) -> list[tuple[xr.DataArray, xr.DataArray]]:
    """(features, class truth) of clear late-summer scenes of other synthetic worlds.

    Each seed is another glacier (shape, debris cover, terrain); its scenes are rendered
    without misregistration (``max_shift=0``), so the truth classes fit the pixels exactly.
    """
    from ..datasets import synthetic_cube
    from ..segmentation.features import features

    out = []
    for seed in seeds:
        cube, truth = synthetic_cube(shape=shape, seed=int(seed), start="2020-07-15", end="2020-10-01",
                                     max_shift=0.0)
        clear = truth.clear_sky.mean(("y", "x")).values
        nodata = truth.nodata.mean(("y", "x")).values
        ok = np.flatnonzero((clear >= min_clear) & (nodata < 0.1))
        pick = ok[np.linspace(0, len(ok) - 1, min(per_seed, len(ok))).round().astype(int)] if len(ok) else []
        for k in pick:
            scene = cube.drop_vars("qa_pixel").isel(time=[int(k)])
            scene = scene.where(truth.clear_sky.isel(time=[int(k)]) > 0)
            feats = features(scene, dem=truth.dem).compute()
            out.append((feats, truth.glacier_class.isel(time=int(k)).compute()))
    return out


def _overlay_png(out: Path, rgb: np.ndarray, truth: np.ndarray, label: np.ndarray, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([(0, 0, 0, 0), (0.1, 0.45, 1.0, 0.55), (1.0, 0.5, 0.0, 0.6)])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), constrained_layout=True)
    for ax, lab, name in ((axes[0], truth, "truth"), (axes[1], label, "U-Net")):
        ax.imshow(np.clip(np.nan_to_num(rgb, nan=1.0) * 1.3, 0, 1))
        # pixels without a class (NODATA) stay transparent instead of taking the last colour
        ax.imshow(np.ma.masked_equal(lab, NODATA), cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        ax.set_title(f"{name}: clean ice (blue), debris (orange)", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path = out / "segmentation.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_segment_demo(cube: xr.Dataset, classes: xr.DataArray, dem: xr.DataArray, out: Path, *,
                     epochs: int = 40, seed: int = 0, tile: int = 64,
                     train_seeds: Sequence[int] = (1, 2, 3, 4, 5), progress: bool = True) -> dict[str, Any]:
    """Train on other synthetic worlds, segment the sample's clearest late-summer scene, score it.

    ``cube`` is the sample's aligned, gap-filled cube and ``classes`` its truth class map
    per scene on the same grid. The U-Net and the baselines learn from clear late-summer
    scenes of the worlds ``train_seeds`` (the last one validates the U-Net); the sample's
    glacier is never seen in training, so the scores are those of a held-out scene.
    """
    import torch

    from ..nn.checkpoint import save_model
    from ..segmentation.classical import ndsi_rule, train_baselines
    from ..segmentation.features import features
    from ..segmentation.labels import polygonize, write_vector
    from ..segmentation.metrics import confusion_matrix, evaluate_segmentation, scores
    from ..segmentation.models import UNet
    from ..segmentation.segment import segment
    from ..segmentation.tiles import segmentation_tiles
    from ..segmentation.train import fit_segmentation

    times = pd.DatetimeIndex(cube.time.values)
    # the clearest late-summer scene (latest among equals): a cloudy one would be mostly
    # gap-filled pixels, and the map would score the filling, not the segmentation
    late = np.flatnonzero(np.isin(times.month, (8, 9)))
    missing = cube["missing"].values[late] if "missing" in cube.coords else np.zeros(late.size)
    last = int(late[::-1][np.argmin(missing[::-1])])
    test_feats = features(cube, time=last, dem=dem).compute()
    truth = classes.isel(time=last).values

    pairs = training_scenes(train_seeds[:-1])
    val_pairs = training_scenes(train_seeds[-1:])
    train = segmentation_tiles(pairs, size=tile, min_glacier_fraction=0.0)
    val = segmentation_tiles(val_pairs, size=tile, min_glacier_fraction=0.0)
    torch.manual_seed(seed)
    model = UNet(channels=list(train.channels), classes=list(train.classes), patch_size=tile,
                 **SMALL_UNET)
    history = fit_segmentation(model, train, val, epochs=epochs, patience=15, seed=seed,
                               progress=progress, **TRAINING)
    ckpt = save_model(model, out / "unet_small", variable="features")

    result = segment(test_feats, model, tile=tile, overlap=16).compute()
    baselines = train_baselines([f for f, _ in pairs], [lab for _, lab in pairs],
                                classes=list(train.classes), n_samples=15_000, seed=seed)
    predictions = {"U-Net": result.label.values,
                   **{name: clf.predict(test_feats).label.values for name, clf in baselines.items()}}
    rows = {}
    glacier = {"glacier": ["clean_ice", "debris_covered_ice"]}
    for name, pred in predictions.items():
        table = evaluate_segmentation(truth, pred, classes=list(train.classes), tile=tile,
                                      merge=glacier).loc["all"]
        rows[name] = table["iou"]
    iou = pd.DataFrame(rows).T
    # the NDSI rule knows snow and ice, not debris: scored on glacier vs background only
    rule = ndsi_rule(test_feats).compute()
    cm = confusion_matrix((truth > 0).astype(np.uint8), rule.label.values.astype(np.uint8), 2)
    rule_scores = scores(cm, classes=["background", "glacier"])
    iou.loc["NDSI > 0.4", "glacier"] = rule_scores.loc["glacier", "iou"]

    labels_path = out / "labels.nc"
    result[["label"]].to_netcdf(labels_path)
    polys = polygonize(result.label, min_area=4 * 900.0)
    gpkg = write_vector(polys, out / "glaciers.gpkg")
    rgb = np.stack([cube[b].isel(time=last).values for b in ("red", "green", "blue")], -1)
    png = _overlay_png(out, rgb, truth, result.label.values, f"{str(times[last])[:10]}, held-out world")
    importances = baselines["random_forest"].feature_importances.sort_values(ascending=False)
    return {
        "scene": str(times[last])[:10],
        "train_tiles": len(train), "val_tiles": len(val),
        "train_scenes": len(pairs), "train_worlds": len(train_seeds) - 1,
        "epochs_run": int(history["epoch"].max()),
        "n_parameters": model.n_parameters(),
        "iou": iou,
        "polygons": len(polys),
        "top_features": list(importances.index[:3]),
        "files": [str(ckpt), str(labels_path), str(gpkg), str(png)],
    }


def format_segment(s: dict[str, Any]) -> list[str]:
    """Report lines of the segmentation demo."""
    lines = [
        f"  segmentation: small U-Net ({s['n_parameters']:,} parameters) trained on {s['train_tiles']} "
        f"tiles of {s['train_scenes']} scenes of {s['train_worlds']} other synthetic glaciers "
        f"({s['epochs_run']} epochs); the sample's scene {s['scene']} segmented (held out), IoU:",
    ]
    iou = s["iou"]
    cols = [c for c in ("clean_ice", "debris_covered_ice", "glacier") if c in iou.columns]
    lines.append("    " + f"{'model':<16}" + "".join(f"{c:>20}" for c in cols))
    for name, row in iou.iterrows():
        vals = "".join(f"{'' if pd.isna(row[c]) else f'{row[c]:.3f}':>20}" for c in cols)
        lines.append(f"    {name:<16}{vals}")
    lines.append(f"    {s['polygons']} glacier polygons; random forest's top features: "
                 f"{', '.join(s['top_features'])}")
    return lines
