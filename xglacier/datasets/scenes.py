"""Acquisitions of the synthetic sensor: dates, per-scene random draws and rendering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ..landsat import QA_BITS, QA_CONFIDENCE_BITS, REFLECTANCE_BANDS, SR_OFFSET, SR_SCALE
from .world import SPECTRA, World, sigmoid, smooth_noise

# QA_PIXEL of a clear, snow-free land pixel: clear bit, all confidences "low".
QA_CLEAR = (1 << QA_BITS["clear"]) | sum(1 << b for b in QA_CONFIDENCE_BITS.values())


def set_confidence(qa: np.ndarray, where: np.ndarray, name: str, level: int) -> None:
    shift = QA_CONFIDENCE_BITS[name]
    qa[where] = (qa[where] & ~np.uint16(0b11 << shift)) | np.uint16(level << shift)


@dataclass
class Scene:
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
    snowline_offset: float  # m, the yearly snowline anomaly
    ice_albedo: float = 1.0  # yearly factor of the clean-ice reflectance
    debris_shift: float = 0.0  # yearly up-glacier shift of the debris line, pixels


@dataclass
class Years:
    """Year-to-year draws of the landscape, one value per calendar year (see :func:`draw_years`)."""

    years: np.ndarray  # calendar years, start.year .. end.year
    cloud_factor: np.ndarray  # multiplies the scenes' cloud fractions, mean 1
    ice_albedo: np.ndarray  # multiplies the clean-ice reflectance
    debris_shift_m: np.ndarray  # up-glacier shift of the debris line, m

    def index(self, year: int) -> int:
        return int(year - self.years[0])


def draw_years(seed: int, first: int, last: int, *, cloud: float, albedo: float, debris: float) -> Years:
    """Yearly cloudiness, ice albedo and debris-line draws, from their own random stream.

    A stream of their own keeps the dates, clouds, shifts and snowline offsets of the
    scenes unchanged when these spreads change (zero spreads give the cube they gave
    before they existed), and a year's draws do not depend on the end of the period.
    """
    years = np.arange(first, last + 1)
    z = np.random.default_rng([seed, 3]).standard_normal((years.size, 3))
    # log-normal with mean 1: a cloudier year is as likely as a clearer one on average
    cloud_factor = np.exp(cloud * z[:, 0] - cloud**2 / 2) if cloud else np.ones(years.size)
    return Years(years=years, cloud_factor=cloud_factor,
                 ice_albedo=np.clip(1 + albedo * z[:, 1], 0.5, 1.5), debris_shift_m=debris * z[:, 2])


def snowline_altitude(doy: int | np.ndarray, anomaly: float | np.ndarray) -> np.ndarray:
    """Altitude (m) of the seasonal snowline: lowest in late February, highest in late August."""
    return 4700 + 800 * np.cos(2 * np.pi * (np.asarray(doy) - 240) / 365.25) + anomaly


def acquisitions(start, end, rng, gaps) -> list[pd.Timestamp]:
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


def draw_scenes(times, start, rng, max_shift, cloud_scale, *, snowline_sd: float, yearly: Years,
                resolution: float) -> list[Scene]:
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
        # drawn for every scene (only a year's first draw is used) so that the sequence of
        # draws, hence every other property of the scenes, does not depend on snowline_sd
        year_offsets.setdefault(t.year, float(snowline_sd * rng.standard_normal()))
        k = yearly.index(t.year)
        scenes.append(Scene(
            index=i, time=t, years=(t - t0).total_seconds() / (365.25 * 86400),
            doy=t.day_of_year,
            shift=(float(rng.uniform(-max_shift, max_shift)), float(rng.uniform(-max_shift, max_shift))),
            cloud=float(np.clip(cloud * cloud_scale * yearly.cloud_factor[k], 0, 0.95)),
            cirrus=bool(rng.random() < 0.1 * min(cloud_scale, 1.0)),
            nodata=nodata, gain=float(rng.uniform(0.97, 1.03)),
            snowline_offset=year_offsets[t.year],
            ice_albedo=float(yearly.ice_albedo[k]),
            debris_shift=float(yearly.debris_shift_m[k] / resolution),
        ))
    return scenes


def illumination(world: World, z: np.ndarray, doy: int) -> np.ndarray:
    res = world.resolution
    dz_drow, dz_dcol = np.gradient(z, res)
    # East-north-up normal: rows increase southwards, hence the sign of the north slope.
    nx, ny = -dz_dcol, dz_drow
    norm = np.sqrt(nx**2 + ny**2 + 1)
    elev = np.deg2rad(55 + 23 * np.cos(2 * np.pi * (doy - 172) / 365.25))
    az = np.deg2rad(140.0)
    cos_i = (nx * np.sin(az) * np.cos(elev) + ny * np.cos(az) * np.cos(elev) + np.sin(elev)) / norm
    return 0.3 + 0.7 * np.clip(cos_i / np.sin(elev), 0, 1.8)


def render(world: World, sc: Scene) -> dict[str, np.ndarray]:
    """Render one scene; returns observed bands, QA and per-scene truth."""
    h, w = world.shape
    rng = np.random.default_rng([world.seed, 2, sc.index])
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = sc.shift
    r, c = rows - dy, cols - dx  # ground position seen by each observed pixel

    z = world.dem(r, c)
    snowline = snowline_altitude(sc.doy, sc.snowline_offset)
    f_snow = sigmoid((z + 80 * world.sample("snow", r, c) - snowline) / 60)
    green_up = max(0.0, np.cos(2 * np.pi * (sc.doy - 200) / 365.25))
    f_veg = sigmoid((3900 - z) / 120) * green_up

    vr, vc = world.velocity_px(r, c)
    dt = sc.years - world.t_ref
    t_ice = world.sample("ice", r - vr * dt, c - vc * dt)
    t_ground = world.sample("ground", r, c)
    g = world.glacier_fraction(r, c, sc.years)
    deb = world.debris_fraction(r, c, sc.years, sc.debris_shift)
    lake = world.lake_fraction(r, c) * (1 - g)
    illum = illumination(world, z, sc.doy)

    spec = {k: np.asarray(v)[:, None, None] for k, v in SPECTRA.items()}
    ground = (spec["rock"] * (1 - f_veg) + spec["vegetation"] * f_veg) * (1 + 0.2 * t_ground)
    ice = (spec["ice"] * sc.ice_albedo * (1 + 0.15 * t_ice) * (1 - deb)
           + spec["debris"] * (1 + 0.3 * t_ice) * deb)
    surface = ground * (1 - g - lake) + ice * g + spec["water"] * lake
    # snow lying on the glacier travels with the ice, so its faint texture is advected too
    snow = spec["snow"] * (1 + 0.03 * (t_ground * (1 - g) + t_ice * g))
    refl = illum * (surface * (1 - f_snow) + snow * f_snow)

    alpha, shade, beta = _atmosphere(rng, sc, (h, w))
    refl = refl * (1 - 0.75 * shade) + 0.03 * beta * spec["snow"] / 0.8
    refl = refl * (1 - alpha) + spec["cloud"] * alpha
    refl = refl * sc.gain + rng.normal(0, world.noise, refl.shape)
    dn = np.clip(np.round((refl - SR_OFFSET) / SR_SCALE), 1, 65535)
    bands = (dn * SR_SCALE + SR_OFFSET).astype(np.float32)

    nodata = _nodata(rng, sc.nodata, rows, cols)
    qa = _quality(alpha, shade, beta, f_snow, g, deb, lake, nodata)
    observed = bands.copy()
    observed[:, nodata] = np.nan
    cls = world.glacier_fraction(rows, cols, sc.years) >= 0.5
    deb_truth = world.debris_fraction(rows, cols, sc.years, sc.debris_shift) >= 0.5
    out = {b: observed[k] for k, b in enumerate(REFLECTANCE_BANDS)}
    out.update({f"true_{b}": bands[k] for k, b in enumerate(REFLECTANCE_BANDS)})
    out["qa_pixel"] = qa
    out["clear_sky"] = (alpha <= 0) & (shade <= 0) & (beta <= 0)
    out["nodata"] = nodata
    out["glacier_class"] = np.where(cls, np.where(deb_truth, 2, 1), 0).astype(np.uint8)
    return out


def _atmosphere(rng: np.random.Generator, sc: Scene, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cloud opacity, cloud-shadow strength and cirrus of one scene, in observed pixels."""
    h, w = shape
    sigma = max(3.0, max(h, w) / 12)
    alpha = np.zeros((h, w))
    if sc.cloud > 0.002:
        field_ = smooth_noise(rng, (h, w), sigma)
        thr = np.quantile(field_, 1 - sc.cloud)
        alpha = np.clip((field_ - thr) / 0.5, 0, 1)
    off = rng.integers(3, max(4, int(0.08 * max(h, w))), size=2)
    shade = np.zeros_like(alpha)
    shade[off[0]:, off[1]:] = alpha[: h - off[0], : w - off[1]]
    shade *= 1 - alpha
    beta = np.zeros((h, w))
    if sc.cirrus:
        cf = smooth_noise(rng, (h, w), sigma * 1.5)
        beta = np.clip((cf - np.quantile(cf, 0.7)) / 0.8, 0, 1)
    return alpha, shade, beta


def _nodata(rng: np.random.Generator, kind: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Nodata pixels of one scene: none, scan-line stripes, a block, or a large wedge."""
    h, w = rows.shape
    nodata = np.zeros((h, w), bool)
    ri, ci = rows.astype(int), cols.astype(int)
    if kind == "stripes":
        period, width = int(rng.integers(14, 24)), int(rng.integers(2, 4))
        nodata = ((ci + (ri * 0.27).astype(int) + int(rng.integers(0, period))) % period) < width
    elif kind == "block":
        bh, bw = (rng.uniform(0.1, 0.4, 2) * (h, w)).astype(int) + 1
        r0, c0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        nodata[r0:r0 + bh, c0:c0 + bw] = True
    elif kind == "heavy":
        nodata = (ri / h + ci / w) > rng.uniform(0.2, 0.7)

    return nodata


def _quality(alpha: np.ndarray, shade: np.ndarray, beta: np.ndarray, f_snow: np.ndarray, g: np.ndarray,
             deb: np.ndarray, lake: np.ndarray, nodata: np.ndarray) -> np.ndarray:
    """QA_PIXEL bit flags as Fmask would set them from the scene's clouds and surfaces."""
    h, w = alpha.shape
    cloud = alpha > 0.35
    dilated = ndimage.binary_dilation(cloud, iterations=3) & ~cloud
    # Like Fmask, shadows are dilated (it uses 3 px); thin cirrus is flagged generously.
    shadow = ndimage.binary_dilation(shade > 0.05, iterations=2) & ~cloud
    cirrus = ndimage.binary_dilation(beta > 0.1, iterations=1)
    snowy = ((f_snow > 0.5) | ((g > 0.5) & (deb < 0.5))) & ~cloud
    water = (lake > 0.5) & (f_snow < 0.5) & ~cloud
    qa = np.full((h, w), QA_CLEAR, np.uint16)
    for flag, where in (("cloud", cloud), ("dilated_cloud", dilated), ("cloud_shadow", shadow),
                        ("cirrus", cirrus), ("snow", snowy), ("water", water)):
        qa[where] |= np.uint16(1 << QA_BITS[flag])
    qa[cloud | dilated] &= np.uint16(~(1 << QA_BITS["clear"]) & 0xFFFF)
    set_confidence(qa, cloud, "cloud_confidence", 3)
    set_confidence(qa, dilated, "cloud_confidence", 2)
    set_confidence(qa, shadow, "cloud_shadow_confidence", 3)
    set_confidence(qa, snowy, "snow_ice_confidence", 3)
    set_confidence(qa, cirrus, "cirrus_confidence", 3)
    qa[nodata] = np.uint16(1 << QA_BITS["fill"])

    return qa
