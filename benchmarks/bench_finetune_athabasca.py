"""Fine-tuning on real corrections: Athabasca Glacier, one corrected scene, an unseen date.

The acceptance measurement of ``xglacier.fine_tune`` (docs/fine-tuning.md):

1. a small U-Net is trained on synthetic scenes only, as ``xglacier demo`` does (the
   preset ``SMALL_UNET`` / ``TRAINING`` of ``xglacier.demo.segment``; or ``--model``);
2. the outline ``athabasca_outline.shp`` on the HLS L30 scene of 2020-08-16 plays the
   expert's corrected map: the model is fine-tuned on it;
3. the glacier IoU (glacier vs background) is measured on the HLS S30 scene of 2020-09-09,
   which the fine-tuning never saw, before and after, beside the NDSI rule.

Everything runs on one torch thread (``--threads``, restored after): the float summation
order, and with it the pre-trained parent, depends on the thread count. The crops live
beside the project (``../shared/data/athabasca``); without them the script says so and exits.
Run from the project root::

    PYTHONPATH=. python benchmarks/bench_finetune_athabasca.py --png docs/images/fine-tuning-athabasca.png
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import xglacier
from xglacier.errors import OutOfDistributionWarning
from xglacier.nn.threads import torch_threads
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.finetune import fine_tune

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "athabasca"
SCENES = {"L30 2020-08-16": "athabasca_2020229_B0*_L30.tif", "S30 2020-09-09": "athabasca_2020253_B*_S30.tif"}
#: The fine-tuning of the measurement (see docs/fine-tuning.md for why these values; radiometric=0.3
#: was chosen on the held-out strip among 0, 0.1, 0.2, 0.3, 0.5).
FINE_TUNING = {"classes": "clean_ice", "lr": 3e-3, "epochs": 60, "patience": None, "schedule": "cosine",
               "tile_size": 128, "stride": 32, "batch_size": 4, "statistics": "scene", "augment": False,
               "holdout_side": "north", "refit_epochs": "all", "average_last": None,
               "radiometric": 0.3}
#: Segment with the mean over the 8 turns and flips of every window (``segment(tta=...)``).
TTA = False


def pretrain(out: Path, epochs: int, seed: int) -> Path:
    """The demo's small U-Net trained on synthetic worlds 1-4 (world 5 validates)."""
    import torch

    from xglacier.demo.segment import SMALL_UNET, TRAINING, training_scenes
    from xglacier.models import UNet

    train = xglacier.segmentation_tiles(training_scenes((1, 2, 3, 4)), size=64, min_glacier_fraction=0.0)
    val = xglacier.segmentation_tiles(training_scenes((5,)), size=64, min_glacier_fraction=0.0)
    torch.manual_seed(seed)
    model = UNet(channels=list(train.channels), classes=list(train.classes), patch_size=64, **SMALL_UNET)
    xglacier.fit_segmentation(model, train, val, epochs=epochs, patience=15, seed=seed, progress=False,
                              **TRAINING)
    return xglacier.save_model(model, out / "unet_synthetic", variable="features")


def glacier(label: np.ndarray) -> np.ndarray:
    """Glacier (any class but background) vs background; NODATA stays NODATA."""
    return np.where(label == NODATA, NODATA, (label > 0) & (label != NODATA)).astype(np.uint8)


def glacier_iou(truth: np.ndarray, pred: np.ndarray) -> float:
    cm = xglacier.confusion_matrix(truth.astype(np.uint8), pred, 2)
    return float(xglacier.scores(cm, classes=["background", "glacier"]).loc["glacier", "iou"])


def unet_map(features, checkpoint: Path, tta: bool) -> np.ndarray:
    model = xglacier.load_model(checkpoint, expect=features)
    with warnings.catch_warnings():
        # the synthetic worlds lie ~2 km higher: segment says so, and that is the point here
        warnings.simplefilter("ignore", OutOfDistributionWarning)
        return glacier(xglacier.segment(features, model, tile=128, overlap=32, tta=tta).label.values)


def draw(path: Path, features, truth: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    rgb = np.stack([features.sel(channel=b).values for b in ("red", "green", "blue")], -1)
    colours = ListedColormap(["#3b6e2f", "#5fc8f0", "#9a9a9a"])
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.6 * (1 + len(maps)), 4.2))
    axes[0].imshow(np.clip(np.nan_to_num(rgb), 0, 1))
    axes[0].set_title("HLS S30 2020-09-09, outline", fontsize=9)
    for ax, (name, label) in zip(axes[1:], maps.items(), strict=True):
        ax.imshow(np.where(label == NODATA, 2, label), cmap=colours, vmin=-0.5, vmax=2.5,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.contour(truth, levels=[0.5], colors="yellow", linewidths=1)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.colors]
    fig.legend(handles, ["background", "glacier", "no data"], loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the Athabasca crops")
    parser.add_argument("--model", type=Path, default=None,
                        help="synthetic-only U-Net checkpoint (default: train one as the demo does)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the checkpoints (default: temp)")
    parser.add_argument("--epochs", type=int, default=40, help="pre-training epochs (the demo's 40)")
    parser.add_argument("--holdout-side", default=FINE_TUNING["holdout_side"])
    parser.add_argument("--ft-epochs", type=int, default=FINE_TUNING["epochs"], help="fine-tuning epochs")
    parser.add_argument("--patience", type=int, default=FINE_TUNING["patience"] or 0,
                        help="early-stopping patience (0: none, the strip only picks the best epoch)")
    parser.add_argument("--batch-size", type=int, default=FINE_TUNING["batch_size"])
    parser.add_argument("--stride", type=int, default=FINE_TUNING["stride"], help="training tile stride")
    parser.add_argument("--tile-size", type=int, default=FINE_TUNING["tile_size"], help="training tile size")
    parser.add_argument("--lr", type=float, default=FINE_TUNING["lr"], help="fine-tuning learning rate")
    parser.add_argument("--statistics", default=FINE_TUNING["statistics"], choices=("parent", "scene"))
    parser.add_argument("--schedule", default=FINE_TUNING["schedule"], choices=("constant", "cosine"))
    parser.add_argument("--refit-epochs", default=FINE_TUNING["refit_epochs"], choices=("best", "all"))
    parser.add_argument("--average-last", type=int, default=FINE_TUNING["average_last"] or 0,
                        help="average the weights of the last K epochs of each run (0: none)")
    parser.add_argument("--radiometric", type=float, default=FINE_TUNING["radiometric"],
                        help="random band gains in [exp(-R), exp(R)] per training tile")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=FINE_TUNING["augment"],
                        help="random turns and flips while fine-tuning")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=TTA,
                        help="segment with the mean over the 8 turns and flips of every window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, default=None, help="write the before/after figure here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the whole run (default 1: the same models everywhere)")
    return parser


def main() -> int:
    args = _parser().parse_args()
    if not (args.data / "athabasca_outline.shp").is_file():
        print(f"skipped: the Athabasca crops are not in {args.data} (they live in ../shared/data beside "
              "the project; pass --data)")
        return 0
    with torch_threads(args.threads):
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Pre-train (unless ``--model``), fine-tune on L30, score L30 and S30, draw the figure."""
    import rioxarray

    out = args.out or Path(tempfile.mkdtemp(prefix="xglacier-finetune-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parent = args.model or pretrain(out, args.epochs, args.seed)
    t_pre = time.perf_counter() - t0
    dem = rioxarray.open_rasterio(args.data / "athabasca_dem.tif", masked=True).squeeze("band", drop=True)
    feats = {name: xglacier.features(xglacier.open_scenes(sorted(args.data.glob(pattern))), dem=dem).compute()
             for name, pattern in SCENES.items()}
    outline = args.data / "athabasca_outline.shp"
    truth = xglacier.rasterize(outline, like=feats["S30 2020-09-09"]).values > 0

    t1 = time.perf_counter()
    opts = {**FINE_TUNING, "holdout_side": args.holdout_side, "seed": args.seed, "epochs": args.ft_epochs,
            "patience": None if args.patience <= 0 else args.patience, "batch_size": args.batch_size,
            "stride": args.stride, "tile_size": args.tile_size, "lr": args.lr, "statistics": args.statistics,
            "schedule": args.schedule, "augment": args.augment, "refit_epochs": args.refit_epochs,
            "average_last": args.average_last or None, "radiometric": args.radiometric}
    _, history = fine_tune(parent, feats["L30 2020-08-16"], outline, out=out / "unet_athabasca", **opts)
    t_ft = time.perf_counter() - t1
    tuned = history.attrs["checkpoint"]
    record = history.attrs["fine_tuning"]

    print(f"parent: {parent}")
    print(f"fine-tuning on {SCENES['L30 2020-08-16']}: {opts}; torch threads {args.threads}")
    print(f"  held-out {record['holdout']['side']} strip {record['holdout']['shape']} px: glacier IoU "
          f"{record['scores']['holdout_iou_before']['glacier']:.3f} -> "
          f"{record['scores']['holdout_iou_after']['glacier']:.3f}; best epoch "
          f"{record['training']['best_epoch']} of {record['training']['epochs_run']}, then refit on the "
          f"whole scene for {record['scores'].get('refit_epochs')} epochs")
    print(f"{'glacier IoU (segment tta=' + str(args.tta) + ')':<36}{'U-Net before':>14}{'U-Net after':>14}"
          f"{'NDSI rule':>12}")
    maps = {}
    for name, f in feats.items():
        before, after = unet_map(f, parent, args.tta), unet_map(f, tuned, args.tta)
        rule = xglacier.ndsi_rule(f).label.values
        seen = "corrected scene" if name.startswith("L30") else "unseen date"
        print(f"{name + ' (' + seen + ')':<36}{glacier_iou(truth, before):>14.3f}"
              f"{glacier_iou(truth, after):>14.3f}{glacier_iou(truth, rule):>12.3f}")
        if name.startswith("S30"):
            maps = {"U-Net before (synthetic only)": before, "U-Net after one round": after,
                    "NDSI > 0.4 rule": rule}
    print(f"pre-training {t_pre:.0f} s, fine-tuning {t_ft:.0f} s; load average {os.getloadavg()}")
    print(f"checkpoints in {out}")
    if args.png is not None:
        draw(args.png, feats["S30 2020-09-09"], truth, maps)
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
