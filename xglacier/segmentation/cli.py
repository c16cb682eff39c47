"""``xglacier fine-tune``: train a segmentation checkpoint further on corrected polygons of one scene."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Fine-tune a segmentation model on the corrected polygons of one scene (the output of
`xglacier review`) and write a new checkpoint:

  1. open the scene's band files (as xglacier.open_scenes) and build the model's
     feature channels from them (--dem for elevation and slope);
  2. rasterize the corrected polygons on the scene's grid (reprojected if needed);
  3. train a few epochs at a small learning rate on tiles of the scene, keeping the
     model's normalisation statistics (--statistics scene: those of the scene's training
     part, for a model trained far from it), stopping early on a held-out strip of the scene,
     then again from the start on the whole scene for the best number of epochs;
  4. write NEW_CKPT (.safetensors + .json); the JSON records the corrections it
     learned from, the scene, the held-out scores and the parent checkpoint.

Segment again with the new checkpoint (xglacier.segment) to review the next round."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fine-tune`` subcommand to the ``xglacier`` parser."""
    p = sub.add_parser("fine-tune", help="train a segmentation checkpoint further on corrected polygons",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="segmentation checkpoint (.json/.safetensors pair)")
    p.add_argument("--image", nargs="+", required=True, metavar="SCENE_FILE",
                   help="the corrected scene's band files, a folder or a glob (as xglacier.open_scenes)")
    p.add_argument("--polygons", required=True, metavar="CORRECTED",
                   help="corrected polygons (GeoPackage, GeoJSON, shapefile)")
    p.add_argument("--out", required=True, metavar="NEW_CKPT", help="where to write the new checkpoint")
    p.add_argument("--dem", default=None, help="DEM raster, for models with elevation / slope channels")
    p.add_argument("--time", default=None, help="the scene's date when the files hold several scenes")
    p.add_argument("--column", default=None, help="polygon column holding the class (default: class_name, "
                   "else class)")
    p.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                   help="one model class for every polygon (outlines without a class column)")
    p.add_argument("--layer", default=None, help="layer of a multi-layer file")
    p.add_argument("--epochs", type=int, default=None, help="most epochs (default: fine_tune's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: fine_tune's)")
    p.add_argument("--statistics", default=None, choices=("parent", "scene"),
                   help="normalisation: the parent's statistics, or the scene's training part "
                   "(default: fine_tune's)")
    p.add_argument("--schedule", default=None, choices=("constant", "cosine"),
                   help="learning rate over a run (default: fine_tune's)")
    p.add_argument("--refit-epochs", default=None, choices=("best", "all"),
                   help="refit on the whole scene for the strip's best epoch or every epoch "
                   "(default: fine_tune's)")
    p.add_argument("--patience", type=int, default=None,
                   help="epochs without a lower held-out loss before stopping; 0: never stop early "
                   "(default: fine_tune's)")
    p.add_argument("--average-last", type=int, default=None, metavar="K",
                   help="return the mean of the weights of each run's last K epochs (needs --patience 0)")
    p.add_argument("--radiometric", type=float, default=None, metavar="R",
                   help="random band gains in [exp(-R), exp(R)] per training tile (default: none)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random turns and flips of the training tiles (default: fine_tune's)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="fraction of the scene held out for early stopping (default: 0.25)")
    p.add_argument("--holdout-side", default="auto", choices=("auto", "north", "south", "east", "west"))
    p.add_argument("--tile-size", type=int, default=None, help="training tile size (default: the model's)")
    p.add_argument("--stride", type=int, default=None,
                   help="pixels between training tiles (default: a quarter tile)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per batch (default: fine_tune's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xglacier fine-tune`` with parsed arguments; 1 with a message on an xglacier error."""
    from ..errors import XGlacierError

    try:
        history = _fine_tune(args)
    except XGlacierError as err:
        print(f"xglacier fine-tune: error: {err}", file=sys.stderr)
        return 1
    record = history.attrs["fine_tuning"]
    before, after = (record["scores"][f"holdout_iou_{k}"]["glacier"] for k in ("before", "after"))
    training = record["training"]
    print(f"fine-tuned on {record['corrections']['n_polygons']} polygons: {training['epochs_run']} epochs "
          f"(best {training['best_epoch']}), {training['train_tiles']} training tiles")
    print(f"glacier IoU on the held-out {record['holdout']['side']} strip: {before:.3f} -> {after:.3f}")
    print(f"wrote {history.attrs['checkpoint']}")
    return 0


def _fine_tune(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..io.local import open_scenes
    from ..nn.checkpoint import load_model
    from .finetune import fine_tune
    from .segment import _features_for

    model = load_model(args.checkpoint)
    terrain = [c for c in ("elevation", "slope") if c in model.channels]
    if terrain and args.dem is None:
        raise InputError(f"fine-tune: the model {args.checkpoint} expects terrain channel(s) {terrain}; "
                         "pass --dem DEM_FILE")
    scene = open_scenes(list(args.image))
    feats = _features_for(scene, model.channels, args.dem, args.time).compute()
    # options not given keep fine_tune's defaults (one place for them)
    given = {k: getattr(args, k) for k in ("epochs", "lr", "statistics", "schedule", "refit_epochs",
                                           "average_last", "patience", "radiometric", "augment",
                                           "stride", "batch_size")
             if getattr(args, k) is not None}
    if given.get("patience") == 0:
        given["patience"] = None
    _, history = fine_tune(args.checkpoint, feats, args.polygons, column=args.column,
                           classes=args.class_name, layer=args.layer, holdout=args.holdout,
                           holdout_side=args.holdout_side, tile_size=args.tile_size, seed=args.seed,
                           out=args.out, progress=not args.quiet, **given)
    return history
