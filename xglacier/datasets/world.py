"""The synthetic landscape: surface spectra, random fields and the analytic glacier geometry.

Coordinates: ``r`` (row, increasing southwards) and ``c`` (column, increasing eastwards)
in pixels of the output grid, continuous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

# Reflectance spectra (blue, green, red, nir08, swir16, swir22) of the surfaces.
SPECTRA = {
    "snow": (0.86, 0.84, 0.80, 0.68, 0.09, 0.07),
    "ice": (0.56, 0.52, 0.47, 0.33, 0.05, 0.04),
    "debris": (0.11, 0.13, 0.15, 0.21, 0.27, 0.22),
    "rock": (0.09, 0.12, 0.15, 0.22, 0.30, 0.24),
    "vegetation": (0.04, 0.08, 0.05, 0.36, 0.19, 0.09),
    "water": (0.07, 0.09, 0.06, 0.03, 0.012, 0.008),
    "cloud": (0.72, 0.71, 0.70, 0.70, 0.52, 0.40),
}

#: Glacier classes of the truth ``glacier_class`` map.
CLASSES: dict[int, str] = {0: "background", 1: "clean_ice", 2: "debris_covered_ice"}


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` pixels."""
    step = max(1, int(sigma // 4))
    if step == 1:
        f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    else:
        # A wide field is drawn on a coarse grid and interpolated: same look, far cheaper.
        coarse = (-(-shape[0] // step) + 3, -(-shape[1] // step) + 3)
        g = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / step, mode="wrap")
        rows = np.arange(shape[0]) / step + 1
        cols = np.arange(shape[1]) / step + 1
        f = ndimage.map_coordinates(g, np.meshgrid(rows, cols, indexing="ij"), order=3)
    return (f - f.mean()) / f.std()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class World:
    """Static fields and parameters of the synthetic landscape."""

    shape: tuple[int, int]
    margin: int
    resolution: float
    ice_speed: float  # m/yr, largest surface speed
    retreat_rate: float  # m/yr
    noise: float
    seed: int
    t_ref: float  # decimal years since start at which the ice texture is unadvected
    coef: dict[str, np.ndarray] = field(default_factory=dict)  # spline coefficients

    # -- analytic geometry (continuous pixel coordinates) --------------------------------
    def centre(self, r: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return w * (0.5 + 0.12 * np.sin(2 * np.pi * 0.8 * r / h + 0.3))

    def centre_slope(self, r: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return w * 0.12 * 2 * np.pi * 0.8 / h * np.cos(2 * np.pi * 0.8 * r / h + 0.3)

    def halfwidth(self, r: np.ndarray) -> np.ndarray:
        h, w = self.shape
        return w * (0.11 - 0.04 * np.clip(r / h, 0, 1))

    def terminus(self, years: float) -> float:
        return 0.72 * self.shape[0] - self.retreat_rate / self.resolution * years

    def glacier_fraction(self, r, c, years):
        """Area fraction of each pixel covered by ice (soft one-pixel edges)."""
        h = self.shape[0]
        d = np.abs(c - self.centre(r))
        taper = np.sqrt(np.clip((self.terminus(years) - r) / (0.06 * h), 0, 1))
        return np.clip(self.halfwidth(r) * taper - d + 0.5, 0, 1)

    def debris_fraction(self, r, c, years, shift=0.0):
        """Fraction of the ice surface covered by debris: the tongue and lateral moraines.

        ``shift`` moves the upper edge of the debris-covered tongue up-glacier (pixels).
        """
        h, w = self.shape
        line = h * (0.48 + 0.02 * np.sin(2 * np.pi * 2 * c / w)) - shift
        tongue = np.clip(r - line + 0.5, 0, 1)
        d = np.abs(c - self.centre(r))
        taper = np.sqrt(np.clip((self.terminus(years) - r) / (0.06 * h), 0, 1))
        lateral = np.clip(d - 0.8 * self.halfwidth(r) * taper + 0.5, 0, 1) * (r > 0.3 * h)
        return np.maximum(tongue, lateral)

    def lake_fraction(self, r, c):
        h, w = self.shape
        rc = 0.80 * h
        q = ((r - rc) / (0.03 * h)) ** 2 + ((c - self.centre(rc)) / (0.05 * w)) ** 2
        return np.clip((1 - q) * 0.03 * h + 0.5, 0, 1)

    def velocity_px(self, r, c):
        """Surface velocity (v_row, v_col) in pixels per year."""
        h = self.shape[0]
        taper = np.sqrt(np.clip((self.terminus(self.t_ref) - r) / (0.06 * h), 0, 1))
        hw = self.halfwidth(r) * taper
        d = c - self.centre(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            across = np.where(hw > 0, np.clip(1 - (d / np.where(hw > 0, hw, 1)) ** 2, 0, 1), 0)
        along = (0.35 + 0.65 * np.exp(-(((r / h) - 0.3) / 0.3) ** 2)) * np.clip(
            (self.terminus(self.t_ref) - r) / (0.15 * h), 0, 1
        )
        speed = self.ice_speed / self.resolution * across * along
        slope = self.centre_slope(r)
        norm = np.sqrt(1 + slope**2)
        return speed / norm, speed * slope / norm

    def sample(self, name: str, r, c) -> np.ndarray:
        """Cubic-spline sample of a static random field at continuous positions."""
        m = self.margin
        return ndimage.map_coordinates(
            self.coef[name], [r + m, c + m], order=3, prefilter=False, mode="nearest"
        )

    def dem(self, r, c) -> np.ndarray:
        h, w = self.shape
        floor = 5400.0 - 1800.0 * np.clip(r / h, -0.2, 1.2)
        d = c - self.centre(r)
        walls = 1000.0 * (1 - np.exp(-((d / (0.18 * w)) ** 2)))
        return floor + walls + 80.0 * self.sample("dem", r, c)


def build_world(shape, resolution, ice_speed, retreat_rate, noise, seed, max_shift, years_total):
    h, w = shape
    t_ref = years_total / 2
    max_disp = ice_speed / resolution * (years_total / 2 + 0.1)
    # A fixed margin keeps the random fields identical when only the shifts or speeds
    # change (so a test can compare a shifted cube with an unshifted one); it grows
    # only for extreme settings.
    margin = max(40, int(np.ceil(max_shift + max_disp)) + 8)
    world = World(
        shape=shape, margin=margin, resolution=resolution, ice_speed=ice_speed,
        retreat_rate=retreat_rate, noise=noise, seed=seed, t_ref=t_ref,
    )
    rng = np.random.default_rng([seed, 1])
    big = (h + 2 * margin, w + 2 * margin)
    fields = {
        "dem": smooth_noise(rng, big, max(h, w) / 25),
        "ground": smooth_noise(rng, big, 1.2),
        "ice": smooth_noise(rng, big, 1.5),
        "snow": smooth_noise(rng, big, max(h, w) / 40),
    }
    world.coef = {k: ndimage.spline_filter(v, order=3) for k, v in fields.items()}
    return world
