"""Facts about the products xglacier reads, kept in one place.

The QA_PIXEL bit layout follows the USGS Landsat 8-9 OLI/TIRS Collection 2 Level-2
product guide; the reflectance scaling is the Collection 2 surface-reflectance one.
The digital-number scalings of the other surface-reflectance products a user is likely
to hold (HLS v2.0 L30/S30, Sentinel-2 L2A) are here too, so that every error message
that asks for scaled reflectance says which factor belongs to which product.

>>> from xglacier.landsat import QA_BITS, flag_mask
>>> QA_BITS["cloud"]
3
>>> flag_mask(["cloud", "cloud_shadow"])
24
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ParameterError

#: Reflective bands of the data model, by STAC ``common_name``, in wavelength order.
REFLECTANCE_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")

#: Name of the quality band.
QA_BAND = "qa_pixel"

#: Collection 2 Level-2 surface reflectance: ``reflectance = DN * SCALE + OFFSET``.
SR_SCALE = 0.0000275
SR_OFFSET = -0.2

#: Smallest and largest reflectance a scaled C2 L2 product can hold (DN 1 .. 65535).
REFLECTANCE_RANGE = (SR_OFFSET, 65535 * SR_SCALE + SR_OFFSET)

#: HLS v2.0 (L30 and S30) surface reflectance: ``DN * HLS_SCALE``, no offset, nodata -9999.
HLS_SCALE = 0.0001
HLS_OFFSET = 0.0
HLS_NODATA = -9999

#: Sentinel-2 L2A surface reflectance: ``(DN + BOA_ADD_OFFSET) / 10000``, with the offset
#: -1000 (reflectance offset -0.1) from processing baseline 04.00 (25 January 2022) on and 0
#: before; nodata 0. The product's metadata say which.
S2_L2A_SCALE = 0.0001
S2_L2A_OFFSET = -0.1

#: ``reflectance = DN * scale + offset`` by product, the facts behind :func:`dn_hint`.
DN_SCALING: dict[str, tuple[float, float]] = {
    "Landsat C2 L2": (SR_SCALE, SR_OFFSET),
    "HLS L30/S30": (HLS_SCALE, HLS_OFFSET),
    "Sentinel-2 L2A from baseline 04.00": (S2_L2A_SCALE, S2_L2A_OFFSET),
    "Sentinel-2 L2A before baseline 04.00": (S2_L2A_SCALE, 0.0),
}

#: Single-bit flags of QA_PIXEL.
QA_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}

#: Two-bit confidence fields of QA_PIXEL (lowest bit); values 0 none, 1 low, 2 medium, 3 high.
QA_CONFIDENCE_BITS: dict[str, int] = {
    "cloud_confidence": 8,
    "cloud_shadow_confidence": 10,
    "snow_ice_confidence": 12,
    "cirrus_confidence": 14,
}

#: Flags that make a pixel unusable by default; snow and water are never in this set.
DEFAULT_MASK_FLAGS: tuple[str, ...] = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")


def flag_mask(flags: Iterable[str]) -> int:
    """Return the QA_PIXEL bit mask that has the named single-bit flags set.

    Parameters
    ----------
    flags
        Names from :data:`QA_BITS`.

    Examples
    --------
    >>> flag_mask(["fill"])
    1
    """
    mask = 0
    for name in flags:
        if name not in QA_BITS:
            raise ParameterError(
                f"unknown QA_PIXEL flag {name!r}; expected one of {sorted(QA_BITS)}"
            )
        mask |= 1 << QA_BITS[name]
    return mask


def dn_hint() -> str:
    """How raw digital numbers become reflectance, product by product, for error messages.

    Examples
    --------
    >>> print(dn_hint())  # doctest: +NORMALIZE_WHITESPACE
    scale digital numbers first: Landsat C2 L2: DN * 0.0000275 - 0.2; HLS L30/S30: DN * 0.0001;
    Sentinel-2 L2A from baseline 04.00: DN * 0.0001 - 0.1; Sentinel-2 L2A before baseline 04.00:
    DN * 0.0001; nodata as NaN
    """
    def formula(scale: float, offset: float) -> str:
        text = f"DN * {scale:.7f}".rstrip("0")
        return text + (f" {'-' if offset < 0 else '+'} {abs(offset):g}" if offset else "")

    rules = "; ".join(f"{name}: {formula(*sc)}" for name, sc in DN_SCALING.items())
    return f"scale digital numbers first: {rules}; nodata as NaN"
