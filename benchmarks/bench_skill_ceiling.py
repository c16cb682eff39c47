"""How far below seasonal persistence can any forecast of the demo's held-out year get?

Task: the demo's quarterly NDSI composites (``open_sample``, the demo's preprocessing) and
its held-out year (the last four quarters). Two forecasts of that year, scored on the same
pixels with the intervals the demo uses (block bootstrap over 40 px blocks, 1000 resamples,
paired):

- *seasonal persistence*: the same quarter one year earlier (the best baseline);
- *climate oracle*: the mean of the same quarter over every earlier year (interpolated
  quarters left out). It knows the place's climate from seven years, which no model
  given four quarters of inputs does; it cannot know the held-out year's own draws.

The sample is made three ways: as the demo makes it (``default``), without the yearly
snowline anomaly (``no-snowline``), and without any year-to-year variability (``none``:
snowline, ice albedo, debris and cloudiness repeat every year; only the terminus retreat,
the acquisition dates, clouds, shifts and noise differ). With ``none`` the remaining
difference between two years' composites of a quarter is how they were observed: which
dates in the quarter were clear while the snowline moved through it. Forecasting cannot
remove that part, because it is in the target too.

The acceptance asked of the demo's model (its MSE interval below seasonal persistence's)
needs roughly ``ratio < low/high`` of seasonal persistence's interval: that figure is
printed as ``needed``.

Run ``PYTHONPATH=. python benchmarks/bench_skill_ceiling.py`` (about 1 min per sample on
2 cores; ``--seeds`` and ``--settings`` choose).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _common import demo_composites

from xglacier.forecasting.ceiling import held_out_ceiling

SETTINGS = {
    "default": {},
    "no-snowline": {"snowline_variability": 0.0},
    "none": {"snowline_variability": 0.0, "albedo_variability": 0.0, "debris_variability": 0.0,
             "cloud_variability": 0.0},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,7,123",
                        help="sample seeds (42 was the demo's until 2026-12-08, 3 is)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {', '.join(SETTINGS)}")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()}", flush=True)
    print(f"{'seed':>4} {'variability':<12} {'seasonal persistence':<24} {'climate oracle':<24} "
          f"{'ratio (paired 95 %)':<22} {'needed':>6}  separate", flush=True)
    for seed in map(int, args.seeds.split(",")):
        for name in args.settings.split(","):
            t0 = time.perf_counter()
            comp = demo_composites(None, seed, **SETTINGS[name])
            r = held_out_ceiling(comp)
            separate = r["oracle_high"] < r["seasonal_low"]
            print(f"{seed:>4} {name:<12} "
                  f"{r['seasonal']:.4f} ({r['seasonal_low']:.4f}-{r['seasonal_high']:.4f})  "
                  f"{r['oracle']:.4f} ({r['oracle_low']:.4f}-{r['oracle_high']:.4f})  "
                  f"{r['ratio']:.2f} ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})       "
                  f"{r['seasonal_low'] / r['seasonal_high']:.2f}  {'yes' if separate else 'no'}   "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
            print("      per quarter (seasonal persistence / oracle): "
                  + ", ".join(f"{t[:7]} {a:.4f} / {b:.4f}" for t, a, b in r["per_frame"]), flush=True)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
