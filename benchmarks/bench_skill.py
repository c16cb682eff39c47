"""Benchmark forecasting skill: the small presets beside every naive baseline, trained the demo's way.

Task: the demo's sample (``xglacier.datasets.open_sample``, 200x200 px, quarterly NDSI
composites made by the demo's preprocessing), the demo's patches and time split
(:func:`xglacier.demo.forecast.demo_patches`: 20x20 patches, 4 quarters in, 4 out, the last
year's windows held out), the default training recipe of :func:`xglacier.fit` with the same
seed for every model. Models: ``SALSTM``, ``LSTMEncoderDecoder`` and ``ConvLSTM``
(``preset="small"``), each with ``residual="history"`` (the demo's: the change over each
quarter's mean over every earlier year), ``residual="seasonal"`` and without a residual
(``--residual`` chooses). Every model is scored by :func:`xglacier.evaluate` on the same test
windows, and on the held-out year alone (the windows that forecast it,
:func:`xglacier.demo.forecast.held_out_year`), beside persistence, seasonal persistence, the
long-term climatology (``history_climatology``), climatology and linear trend (MSE over all
lead times with 95 % block-bootstrap intervals) and timed (training wall time, epochs run);
``beats_test`` / ``beats_year`` count the four named baselines (all but the long-term
climatology) whose interval lies above the model's.

Run ``python benchmarks/bench_skill.py`` (about 10-20 min on 2 cores); ``--composites
FILE.nc`` reuses the demo's ``composites.nc`` instead of preprocessing again; ``--seeds
3,42,1`` scores the same models on several samples (one held-out year is a lottery, see
``bench_skill_ceiling.py``) and ends with each model's paired skill per sample; ``--gap-rate
0.5`` builds the models with ``gaps=True`` and trains them with that ``gap_rate``. The machine's
load average is printed: a busy machine slows training, not the scores (training is seeded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd
import torch
from _common import demo_composites

from xglacier.datasets.synthetic import SAMPLE_SEED

#: The naive baselines issue 14 names: the model's MSE interval must lie below each one's.
NAMED = ("persistence", "seasonal_persistence", "climatology", "linear_trend")


def score(seed: int, args: argparse.Namespace) -> pd.DataFrame:
    """Train the chosen models on the sample of ``seed`` and score them beside the baselines."""
    import xglacier
    from xglacier.demo.forecast import demo_patches, held_out_year, interval_label, verdict

    ndsi = demo_composites(args.composites, seed)
    train, val, test = demo_patches(ndsi, n_in=args.n_in)
    print(f"seed {seed}: {ndsi.sizes['time']} composites; samples: {len(train)} train / {len(val)} val / "
          f"{len(test)} test", flush=True)
    residuals = [None if r == "none" else r for r in args.residual.split(",")]
    models, timing = {}, []
    for cls_name in args.models.split(","):
        for residual in residuals:
            label = f"{cls_name}" + (f" residual={residual}" if residual else "")
            torch.manual_seed(seed)
            gaps = {} if args.gap_rate is None else {"gaps": True}
            model = getattr(xglacier.models, cls_name)(preset="small", residual=residual, n_in=args.n_in,
                                                       **gaps)
            t0 = time.perf_counter()
            history = xglacier.fit(model, train, val, epochs=args.epochs, seed=seed, progress=False,
                                   gap_rate=args.gap_rate)
            seconds = time.perf_counter() - t0
            models[label] = model
            timing.append({"model": label, "train_s": round(seconds, 1), "epochs": len(history),
                           "best_epoch": history.attrs["best_epoch"],
                           "parameters": model.n_parameters()})
            print(f"  trained {label}: {seconds:.0f} s, {len(history)} epochs", flush=True)
    result = None
    for title, ps in (("test windows", test), (f"held-out year {int(ndsi.time.dt.year[-1])}",
                                               held_out_year(test, ndsi))):
        table = xglacier.evaluate(models, ps, n_boot=1000, seed=seed)
        overall = table[table["lead"].astype(str) == "all"].set_index("model")
        cols = [c for c in ("mse", "mse_low", "mse_high", "mae", "skill", "skill_low", "skill_high",
                            "skill_reference") if c in overall.columns]
        shown = overall[cols].join(pd.DataFrame(timing).set_index("model"), how="left")
        print(f"{title} ({len(ps)} patches):")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(shown.sort_values("mse").drop(columns=["skill_low", "skill_high", "skill_reference"],
                                                errors="ignore").to_string(float_format=lambda v: f"{v:.4f}"))
        # the four named baselines: does each model's MSE interval lie below theirs?
        beats = {label: sum(verdict(table, label)[b]["beats"] for b in NAMED) for label in models}
        key = "test" if result is None else "year"
        part = shown.loc[list(models)].assign(**{f"beats_{key}": pd.Series(beats)})
        if result is None:
            result = part
        else:
            result = result.join(part[["mse", "mse_low", "mse_high", "beats_year"]].add_prefix("year_")
                                 .rename(columns={"year_beats_year": "beats_year"}))
    print(f"intervals: {interval_label(table)}", flush=True)
    return result.assign(seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--composites", help="the demo's composites.nc (default: preprocess the sample)")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help="sample and training seed (the demo's)")
    parser.add_argument("--seeds", help="several samples, e.g. 42,1,2 (instead of --seed; no --composites)")
    parser.add_argument("--residual", default="history,seasonal,none",
                        help="comma-separated residuals among history, seasonal, climatology, last, none")
    parser.add_argument("--n-in", type=int, default=4, help="quarters in (the paper's 4)")
    parser.add_argument("--models", default="SALSTM,LSTMEncoderDecoder,ConvLSTM")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo's 1)")
    parser.add_argument("--gap-rate", type=float, default=None,
                        help="build the models with gaps=True and fit them with this gap_rate")
    args = parser.parse_args(argv)
    if args.seeds and args.composites:
        parser.error("--seeds makes each sample's composites; leave out --composites")
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    wrong = set(args.residual.split(",")) - {"history", "seasonal", "climatology", "last", "none"}
    if wrong:
        parser.error(f"--residual: {sorted(wrong)} not among history, seasonal, climatology, last, none")

    from xglacier.nn.threads import torch_threads

    with torch_threads(args.threads):  # one, as the demo: the demo's model, bit for bit
        print(f"load average before: {os.getloadavg()}; torch threads {torch.get_num_threads()}", flush=True)
        rows = pd.concat([score(seed, args) for seed in seeds])
    if len(seeds) > 1:
        print("skill against each sample's best baseline (paired 95 % interval), per seed:")
        for (label, seed), r in rows.reset_index().set_index(["model", "seed"]).iterrows():
            print(f"  {label:<28} seed {seed:>4}: {r['skill']:+.3f} ({r['skill_low']:+.3f} to "
                  f"{r['skill_high']:+.3f}) against {r['skill_reference']}, "
                  f"best epoch {int(r['best_epoch'])}; beats {int(r['beats_test'])} of the 4 named baselines "
                  f"on the test windows, {int(r['beats_year'])} on the held-out year")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
