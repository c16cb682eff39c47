"""Synthetic Landsat-like glacier cubes with ground truth: xglacier's embedded default data.

:func:`synthetic_cube` renders a valley glacier on a synthetic DEM, seen by a
Landsat-like sensor on irregular dates: seasonal snow, a glacier that flows downhill
with a known velocity field (its surface texture is advected by it) and whose terminus
retreats, a clean-ice upper part and a debris-covered tongue, a proglacial lake,
terrain shading, clouds and cloud shadows flagged in ``qa_pixel``, nodata stripes and
blocks, per-scene sub-pixel misregistration and sensor noise. Everything a test may
want to check against is returned in a second Dataset, the truth.

Every scene is rendered by one Dask task when it is computed, so a large preset costs
memory only for what is computed. Geometry is analytic in continuous pixel coordinates
(textures are cubic splines), so misregistration and ice motion are exact sub-pixel
displacements, not resampling artefacts.

Coordinates used below: ``r`` (row, increasing southwards) and ``c`` (column,
increasing eastwards) in pixels of the output grid, continuous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from scipy import ndimage

from .errors import ParameterError
from .landsat import QA_BITS, QA_CONFIDENCE_BITS, REFLECTANCE_BANDS, SR_OFFSET, SR_SCALE

# Reflectance spectra (blue, green, red, nir08, swir16, swir22) of the surfaces.
_SPECTRA = {
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

_PRESETS: dict[str, dict[str, Any]] = {
    "parvati": dict(
        shape=(800, 800), start="2013-04-01", end="2022-01-01",
        gaps=(("2016-04-01", "2016-07-01"),),
    ),
}

# QA_PIXEL of a clear, snow-free land pixel: clear bit, all confidences "low".
_QA_CLEAR = (1 << QA_BITS["clear"]) | sum(1 << b for b in QA_CONFIDENCE_BITS.values())


def _set_conf(qa: np.ndarray, where: np.ndarray, name: str, level: int) -> None:
    shift = QA_CONFIDENCE_BITS[name]
    qa[where] = (qa[where] & ~np.uint16(0b11 << shift)) | np.uint16(level << shift)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class _Scene:
    """Random draws of one acquisition (made eagerly, cheap)."""

    index: int
    time: pd.Timestamp
    years: float  # decimal years since the start
    doy: int
    shift: tuple[float, float]  # (dx, dy) content displacement in pixels
    cloud: float  # target cloud fraction
    cirrus: bool
    nodata: str  # "", "stripes", "block", "heavy"
    gain: float
    snowline_offset: float


@dataclass
class _World:
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

    def debris_fraction(self, r, c, years):
        """Fraction of the ice surface covered by debris: the tongue and lateral moraines."""
        h, w = self.shape
        line = h * (0.48 + 0.02 * np.sin(2 * np.pi * 2 * c / w))
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


def _build_world(shape, resolution, ice_speed, retreat_rate, noise, seed, max_shift, years_total):
    h, w = shape
    t_ref = years_total / 2
    max_disp = ice_speed / resolution * (years_total / 2 + 0.1)
    # A fixed margin keeps the random fields identical when only the shifts or speeds
    # change (so a test can compare a shifted cube with an unshifted one); it grows
    # only for extreme settings.
    margin = max(40, int(np.ceil(max_shift + max_disp)) + 8)
    world = _World(
        shape=shape, margin=margin, resolution=resolution, ice_speed=ice_speed,
        retreat_rate=retreat_rate, noise=noise, seed=seed, t_ref=t_ref,
    )
    rng = np.random.default_rng([seed, 1])
    big = (h + 2 * margin, w + 2 * margin)
    fields = {
        "dem": _smooth_noise(rng, big, max(h, w) / 25),
        "ground": _smooth_noise(rng, big, 1.2),
        "ice": _smooth_noise(rng, big, 1.5),
        "snow": _smooth_noise(rng, big, max(h, w) / 40),
    }
    world.coef = {k: ndimage.spline_filter(v, order=3) for k, v in fields.items()}
    return world


def _acquisitions(start, end, rng, gaps) -> list[pd.Timestamp]:
    t = pd.Timestamp(start) + pd.Timedelta(days=int(rng.integers(0, 8)))
    end = pd.Timestamp(end)
    blocked = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in gaps]
    out = []
    while t < end:
        if not any(a <= t < b for a, b in blocked):
            out.append(t + pd.Timedelta(minutes=int(325 + rng.integers(-8, 9))))
        # Landsat 8 alone revisits every 16 days, with Landsat 9 every 8; some are lost.
        step = int(rng.choice([8, 16], p=[0.65, 0.35]))
        if rng.random() < 0.05:
            step += int(rng.choice([16, 32]))
        t += pd.Timedelta(days=step)
    return out


def _draw_scenes(times, start, rng, max_shift, cloud_scale) -> list[_Scene]:
    t0 = pd.Timestamp(start)
    scenes = []
    year_offsets: dict[int, float] = {}
    for i, t in enumerate(times):
        kind = rng.random()
        if kind < 0.55:
            cloud = rng.uniform(0, 0.05)
        elif kind < 0.85:
            cloud = rng.uniform(0.05, 0.3)
        else:
            cloud = rng.uniform(0.3, 0.9)
        u = rng.random()
        nodata = "stripes" if u < 0.12 else "block" if u < 0.22 else "heavy" if u < 0.26 else ""
        year_offsets.setdefault(t.year, float(rng.normal(0, 150)))
        scenes.append(_Scene(
            index=i, time=t, years=(t - t0).total_seconds() / (365.25 * 86400),
            doy=t.day_of_year,
            shift=(float(rng.uniform(-max_shift, max_shift)), float(rng.uniform(-max_shift, max_shift))),
            cloud=float(np.clip(cloud * cloud_scale, 0, 0.95)),
            cirrus=bool(rng.random() < 0.1 * min(cloud_scale, 1.0)),
            nodata=nodata, gain=float(rng.uniform(0.97, 1.03)),
            snowline_offset=year_offsets[t.year],
        ))
    return scenes


def _illumination(world: _World, z: np.ndarray, doy: int) -> np.ndarray:
    res = world.resolution
    dz_drow, dz_dcol = np.gradient(z, res)
    # East-north-up normal: rows increase southwards, hence the sign of the north slope.
    nx, ny = -dz_dcol, dz_drow
    norm = np.sqrt(nx**2 + ny**2 + 1)
    elev = np.deg2rad(55 + 23 * np.cos(2 * np.pi * (doy - 172) / 365.25))
    az = np.deg2rad(140.0)
    cos_i = (nx * np.sin(az) * np.cos(elev) + ny * np.cos(az) * np.cos(elev) + np.sin(elev)) / norm
    return 0.3 + 0.7 * np.clip(cos_i / np.sin(elev), 0, 1.8)


def _render(world: _World, sc: _Scene) -> dict[str, np.ndarray]:
    """Render one scene; returns observed bands, QA and per-scene truth."""
    h, w = world.shape
    rng = np.random.default_rng([world.seed, 2, sc.index])
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = sc.shift
    r, c = rows - dy, cols - dx  # ground position seen by each observed pixel

    z = world.dem(r, c)
    snowline = 4700 + 800 * np.cos(2 * np.pi * (sc.doy - 240) / 365.25) + sc.snowline_offset
    f_snow = _sigmoid((z + 80 * world.sample("snow", r, c) - snowline) / 60)
    green_up = max(0.0, np.cos(2 * np.pi * (sc.doy - 200) / 365.25))
    f_veg = _sigmoid((3900 - z) / 120) * green_up

    vr, vc = world.velocity_px(r, c)
    dt = sc.years - world.t_ref
    t_ice = world.sample("ice", r - vr * dt, c - vc * dt)
    t_ground = world.sample("ground", r, c)
    g = world.glacier_fraction(r, c, sc.years)
    deb = world.debris_fraction(r, c, sc.years)
    lake = world.lake_fraction(r, c) * (1 - g)
    illum = _illumination(world, z, sc.doy)

    spec = {k: np.asarray(v)[:, None, None] for k, v in _SPECTRA.items()}
    ground = (spec["rock"] * (1 - f_veg) + spec["vegetation"] * f_veg) * (1 + 0.2 * t_ground)
    ice = spec["ice"] * (1 + 0.15 * t_ice) * (1 - deb) + spec["debris"] * (1 + 0.3 * t_ice) * deb
    surface = ground * (1 - g - lake) + ice * g + spec["water"] * lake
    # snow lying on the glacier travels with the ice, so its faint texture is advected too
    snow = spec["snow"] * (1 + 0.03 * (t_ground * (1 - g) + t_ice * g))
    refl = illum * (surface * (1 - f_snow) + snow * f_snow)

    # Atmosphere, in observed pixel coordinates.
    sigma = max(3.0, max(h, w) / 12)
    alpha = np.zeros((h, w))
    if sc.cloud > 0.002:
        field_ = _smooth_noise(rng, (h, w), sigma)
        thr = np.quantile(field_, 1 - sc.cloud)
        alpha = np.clip((field_ - thr) / 0.5, 0, 1)
    off = rng.integers(3, max(4, int(0.08 * max(h, w))), size=2)
    shade = np.zeros_like(alpha)
    shade[off[0]:, off[1]:] = alpha[: h - off[0], : w - off[1]]
    shade *= 1 - alpha
    beta = np.zeros((h, w))
    if sc.cirrus:
        cf = _smooth_noise(rng, (h, w), sigma * 1.5)
        beta = np.clip((cf - np.quantile(cf, 0.7)) / 0.8, 0, 1)
    refl = refl * (1 - 0.75 * shade) + 0.03 * beta * spec["snow"] / 0.8
    refl = refl * (1 - alpha) + spec["cloud"] * alpha
    refl = refl * sc.gain + rng.normal(0, world.noise, refl.shape)
    dn = np.clip(np.round((refl - SR_OFFSET) / SR_SCALE), 1, 65535)
    bands = (dn * SR_SCALE + SR_OFFSET).astype(np.float32)

    nodata = np.zeros((h, w), bool)
    ri, ci = rows.astype(int), cols.astype(int)
    if sc.nodata == "stripes":
        period, width = int(rng.integers(14, 24)), int(rng.integers(2, 4))
        nodata = ((ci + (ri * 0.27).astype(int) + int(rng.integers(0, period))) % period) < width
    elif sc.nodata == "block":
        bh, bw = (rng.uniform(0.1, 0.4, 2) * (h, w)).astype(int) + 1
        r0, c0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        nodata[r0:r0 + bh, c0:c0 + bw] = True
    elif sc.nodata == "heavy":
        nodata = (ri / h + ci / w) > rng.uniform(0.2, 0.7)

    cloud = alpha > 0.35
    dilated = ndimage.binary_dilation(cloud, iterations=3) & ~cloud
    # Like Fmask, shadows are dilated (it uses 3 px); thin cirrus is flagged generously.
    shadow = ndimage.binary_dilation(shade > 0.05, iterations=2) & ~cloud
    cirrus = ndimage.binary_dilation(beta > 0.1, iterations=1)
    snowy = ((f_snow > 0.5) | ((g > 0.5) & (deb < 0.5))) & ~cloud
    water = (lake > 0.5) & (f_snow < 0.5) & ~cloud
    qa = np.full((h, w), _QA_CLEAR, np.uint16)
    for flag, where in (("cloud", cloud), ("dilated_cloud", dilated), ("cloud_shadow", shadow),
                        ("cirrus", cirrus), ("snow", snowy), ("water", water)):
        qa[where] |= np.uint16(1 << QA_BITS[flag])
    qa[cloud | dilated] &= np.uint16(~(1 << QA_BITS["clear"]) & 0xFFFF)
    _set_conf(qa, cloud, "cloud_confidence", 3)
    _set_conf(qa, dilated, "cloud_confidence", 2)
    _set_conf(qa, shadow, "cloud_shadow_confidence", 3)
    _set_conf(qa, snowy, "snow_ice_confidence", 3)
    _set_conf(qa, cirrus, "cirrus_confidence", 3)
    qa[nodata] = np.uint16(1 << QA_BITS["fill"])

    observed = bands.copy()
    observed[:, nodata] = np.nan
    cls = world.glacier_fraction(rows, cols, sc.years) >= 0.5
    deb_truth = world.debris_fraction(rows, cols, sc.years) >= 0.5
    out = {b: observed[k] for k, b in enumerate(REFLECTANCE_BANDS)}
    out.update({f"true_{b}": bands[k] for k, b in enumerate(REFLECTANCE_BANDS)})
    out["qa_pixel"] = qa
    out["clear_sky"] = (alpha <= 0) & (shade <= 0) & (beta <= 0)
    out["nodata"] = nodata
    out["glacier_class"] = np.where(cls, np.where(deb_truth, 2, 1), 0).astype(np.uint8)
    return out


def synthetic_cube(
    shape: tuple[int, int] = (128, 128),
    start: str = "2020-01-01",
    end: str = "2022-01-01",
    seed: int = 0,
    preset: str | None = None,
    resolution: float = 30.0,
    crs: str = "EPSG:32643",
    origin: tuple[float, float] = (734460.0, 3568110.0),
    max_shift: float = 1.0,
    ice_speed: float = 120.0,
    retreat_rate: float = 15.0,
    noise: float = 0.005,
    cloud_scale: float = 1.0,
    gaps: tuple[tuple[str, str], ...] = (),
) -> tuple[xr.Dataset, xr.Dataset]:
    """Generate a raw Landsat-like scene cube of a valley glacier and its ground truth.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of each scene.
    start, end
        Acquisition period; dates follow an 8/16-day revisit with random losses.
    seed
        Everything is deterministic for a given seed.
    preset
        ``"parvati"``: 800x800 pixels from 2013-04 to 2022 (about 270 scenes) with one
        empty quarter, for benchmarks. Explicit keywords other than the defaults of
        ``shape``, ``start``, ``end`` and ``gaps`` are kept.
    resolution, crs, origin
        Pixel size (m), projected CRS and the (west, north) corner of the grid;
        the default is UTM 43N over the Parvati glacier, India.
    max_shift
        Largest per-scene misregistration in pixels (uniform in ``[-max_shift, max_shift]``
        for x and y independently).
    ice_speed
        Largest glacier surface speed in m/yr.
    retreat_rate
        Terminus retreat in m/yr.
    noise
        Standard deviation of the Gaussian sensor noise (reflectance).
    cloud_scale
        Multiplies every scene's cloud fraction (0 gives cloud-free scenes).
    gaps
        ``(start, end)`` periods without any acquisition.

    Returns
    -------
    cube : xarray.Dataset
        ``time, y, x`` with float32 reflectance ``blue, green, red, nir08, swir16,
        swir22`` (NaN = nodata) and uint16 ``qa_pixel`` (Landsat C2 bit semantics: fill
        pixels are exactly 1), per-scene coordinates ``id``, ``platform``,
        ``cloud_cover`` (percent), and a CF ``spatial_ref``. Lazy, one task per scene.
    truth : xarray.Dataset
        ``dem`` (m), ``glacier_class`` (time, y, x; see :data:`CLASSES`),
        ``velocity_x``/``velocity_y``/``speed`` (m/yr, east/north, at the reference
        time ``attrs["velocity_reference_time"]``), ``shift_x``/``shift_y`` (pixels:
        scene content is displaced by +shift_x columns and +shift_y rows relative to the
        ground grid), ``clear_sky`` (no cloud, shadow or cirrus), ``nodata`` and
        ``true_<band>`` (the observed values including those hidden under nodata).
        The ground fields (dem, class, velocity) are on the unshifted grid; the
        per-scene fields are on the observed grid.

    Examples
    --------
    >>> cube, truth = synthetic_cube(shape=(64, 64), end="2020-06-01")
    >>> sorted(cube.data_vars)[:3], cube.green.dtype.name, cube.rio.crs.to_epsg()
    (['blue', 'green', 'nir08'], 'float32', 32643)
    """
    if preset is not None:
        if preset not in _PRESETS:
            raise ParameterError(f"synthetic_cube: preset={preset!r}; expected one of {sorted(_PRESETS)}")
        p = _PRESETS[preset]
        shape, start, end, gaps = p["shape"], p["start"], p["end"], p["gaps"]
    if len(shape) != 2 or min(shape) < 16:
        raise ParameterError(f"synthetic_cube: shape={shape!r}; expected (rows, cols), each >= 16")
    t_start, t_end = pd.Timestamp(start), pd.Timestamp(end)
    if t_end <= t_start + pd.Timedelta(days=20):
        raise ParameterError(f"synthetic_cube: end={end!r} must be at least 20 days after start={start!r}")
    if max_shift < 0 or ice_speed < 0 or noise < 0 or cloud_scale < 0:
        raise ParameterError("synthetic_cube: max_shift, ice_speed, noise and cloud_scale must be >= 0")
    shape = (int(shape[0]), int(shape[1]))
    h, w = shape
    rng = np.random.default_rng([seed, 0])
    times = _acquisitions(t_start, t_end, rng, gaps)
    if not times:
        raise ParameterError("synthetic_cube: no acquisition falls between start and end outside gaps")
    years_total = (t_end - t_start).total_seconds() / (365.25 * 86400)
    scenes = _draw_scenes(times, t_start, rng, max_shift, cloud_scale)
    world = _build_world(shape, resolution, ice_speed, retreat_rate, noise, seed, max_shift, years_total)

    world_d = dask.delayed(world, pure=True)
    tok = dask.base.tokenize(shape, start, end, seed, resolution, max_shift, ice_speed,
                             retreat_rate, noise, cloud_scale, gaps)
    renders = [
        dask.delayed(_render, pure=True, name=f"synthetic-scene-{tok}-{i}")(world_d, sc)
        for i, sc in enumerate(scenes)
    ]

    def stack(var: str, dtype) -> dsa.Array:
        return dsa.stack([dsa.from_delayed(d[var], (h, w), dtype=dtype) for d in renders])

    x = origin[0] + (np.arange(w) + 0.5) * resolution
    y = origin[1] - (np.arange(h) + 0.5) * resolution
    time = pd.DatetimeIndex(times).as_unit("ns")
    platform = np.where(
        (time >= pd.Timestamp("2021-11-01")) & (np.arange(len(time)) % 2 == 1),
        "landsat-9", "landsat-8",
    )
    cloud_cover = np.clip(
        np.array([100 * s.cloud for s in scenes]) + rng.normal(0, 2, len(scenes)), 0, 100
    ).round(2)
    ids = [
        f"{'LC09' if p == 'landsat-9' else 'LC08'}_L2SP_147038_{t:%Y%m%d}_SYNTH_{i:03d}"
        for i, (p, t) in enumerate(zip(platform, time, strict=True))
    ]
    coords = {
        "time": time, "y": y, "x": x,
        "id": ("time", np.array(ids)),
        "platform": ("time", platform.astype(str)),
        "cloud_cover": ("time", cloud_cover),
    }
    band_attrs = {"units": "1", "long_name": "surface reflectance"}
    data_vars = {
        b: (("time", "y", "x"), stack(b, np.float32),
            {**band_attrs, "long_name": f"{b} surface reflectance"})
        for b in REFLECTANCE_BANDS
    }
    data_vars["qa_pixel"] = (
        ("time", "y", "x"), stack("qa_pixel", np.uint16),
        {"long_name": "Landsat Collection 2 QA_PIXEL bit flags", "units": "1"},
    )
    cube = xr.Dataset(data_vars, coords=coords, attrs={
        "title": "xglacier synthetic glacier cube",
        "source": "xglacier.datasets.synthetic_cube",
        "synthetic_seed": seed,
    })
    cube["cloud_cover"].attrs = {"long_name": "scene cloud cover", "units": "percent"}
    cube = _georeference(cube, crs)

    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    vr, vc = world.velocity_px(rows, cols)
    ref_time = t_start + pd.Timedelta(days=world.t_ref * 365.25)
    truth_vars: dict[str, Any] = {
        "dem": (("y", "x"), world.dem(rows, cols).astype(np.float32),
                {"long_name": "surface altitude", "standard_name": "surface_altitude", "units": "m"}),
        "velocity_x": (("y", "x"), (vc * resolution).astype(np.float32),
                       {"long_name": "ice surface velocity, eastward", "units": "m yr-1"}),
        "velocity_y": (("y", "x"), (-vr * resolution).astype(np.float32),
                       {"long_name": "ice surface velocity, northward", "units": "m yr-1"}),
        "speed": (("y", "x"), (np.hypot(vr, vc) * resolution).astype(np.float32),
                  {"long_name": "ice surface speed", "units": "m yr-1"}),
        "shift_x": ("time", np.array([s.shift[0] for s in scenes]),
                    {"long_name": "scene content displacement along x (columns)", "units": "pixel"}),
        "shift_y": ("time", np.array([s.shift[1] for s in scenes]),
                    {"long_name": "scene content displacement along rows (southward)", "units": "pixel"}),
        "glacier_class": (("time", "y", "x"), stack("glacier_class", np.uint8), {
            "long_name": "glacier class", "flag_values": list(CLASSES),
            "flag_meanings": " ".join(CLASSES.values()),
        }),
        "clear_sky": (("time", "y", "x"), stack("clear_sky", bool),
                      {"long_name": "pixel free of cloud, cloud shadow and cirrus"}),
        "nodata": (("time", "y", "x"), stack("nodata", bool),
                   {"long_name": "pixel set to nodata in the cube"}),
    }
    for b in REFLECTANCE_BANDS:
        truth_vars[f"true_{b}"] = (("time", "y", "x"), stack(f"true_{b}", np.float32),
                                   {**band_attrs, "long_name": f"{b} reflectance under nodata too"})
    truth = xr.Dataset(truth_vars, coords={"time": time, "y": y, "x": x}, attrs={
        "title": "ground truth of the xglacier synthetic cube",
        "velocity_reference_time": str(ref_time),
        "terminus_retreat_rate_m_per_yr": retreat_rate,
    })
    truth = _georeference(truth, crs)
    return cube, truth


def _georeference(ds: xr.Dataset, crs: str) -> xr.Dataset:
    ds = ds.rio.write_crs(crs).rio.write_transform()
    for name in ds.data_vars:
        ds[name].encoding["grid_mapping"] = "spatial_ref"
    return ds


def open_sample(seed: int = 42) -> tuple[xr.Dataset, xr.Dataset]:
    """The demo's sample: a 200x200 synthetic cube over 2016-2021 and its truth.

    Examples
    --------
    >>> cube, truth = open_sample()
    >>> cube.sizes["y"], cube.sizes["x"]
    (200, 200)
    """
    return synthetic_cube(
        shape=(200, 200), start="2016-01-01", end="2022-01-01", seed=seed,
        gaps=(("2019-07-01", "2019-10-01"),),
    )
