"""``xglacier demo``: the whole method on the embedded synthetic sample."""

from __future__ import annotations

import argparse

from ..datasets.synthetic import SAMPLE_SEED

HELP = """\
Run the whole method on the embedded synthetic sample (a 200x200 px valley glacier,
2014-2021, with its ground truth), in a few minutes on a laptop, and write the outputs:

  1. clean the scenes (cloud mask, scene filter), align them (ECC), fill gaps,
     compute NDSI and 3-month composites, measure surface velocity (optical flow);
  2. train a small SA-LSTM-H forecast model (residual over the long-term climatology, the
     default recipe) on the composites, score it beside the naive baselines with
     block-bootstrap intervals, say whether it beats each, map where it beats seasonal
     persistence, forecast the held-out year;
  3. train a small U-Net on other synthetic glaciers, map clean and debris-covered
     ice on the sample and score it beside the classical baselines.

Writes NetCDF/Zarr cubes, GeoPackage outlines, model checkpoints (safetensors + JSON)
and PNG quicklooks into --out, prints progress on standard error and a summary with
every figure compared to the truth on standard output."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand to the ``xglacier`` parser."""
    demo = sub.add_parser("demo", help="run the whole method on the embedded synthetic sample "
                          "(preprocessing, motion, forecasting and segmentation; trains two models)",
                          description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--seed", type=int, default=SAMPLE_SEED,
                      help=f"seed of the synthetic sample (default: {SAMPLE_SEED}, the sample's own)")
    demo.add_argument("--epochs", type=int, default=None,
                      help="maximum epochs of the forecast model (default: the training recipe's, 30, "
                           "with early stopping)")
    demo.add_argument("--seg-epochs", type=int, default=40,
                      help="training epochs of the segmentation U-Net (default: 40)")
    demo.add_argument("--threads", type=int, default=1,
                      help="torch threads while the models train (default: 1, the same models on every "
                           "machine and no stall on a busy one; 0: torch's own, one per core)")
    demo.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xglacier demo`` with parsed arguments."""
    from . import format_summary, run_demo

    print(format_summary(run_demo(args.out, seed=args.seed, epochs=args.epochs,
                                  seg_epochs=args.seg_epochs, threads=args.threads or None,
                                  progress=not args.quiet)))
    return 0
