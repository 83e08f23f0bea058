"""The data-quality step of one calibrated frame: bad pixels, bleed trails, cosmic rays, fill.

`flag_frame` runs after the pixel calibration of a frame, in the same per-frame task, for the
`Calibrator` and the night alike; `QualityParams` says what it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from ccdflow.array.cosmics import CosmicRayParams
from ccdflow.array.masks import MASK_DTYPE, MaskBits
from ccdflow.array.params import check_keys, parse_enum, parse_int, parse_number
from ccdflow.array.quality import DEFAULT_FILL_BITS
from ccdflow.errors import ConfigError
from ccdflow.kernels.bleed import DEFAULT_BLEED_FRACTION, bleed_trails, grow_mask
from ccdflow.kernels.cosmics import detect_cosmics_block
from ccdflow.kernels.fill import interpolate_rows

__all__ = ["CosmicRayMode", "FillMode", "QualityParams", "flag_counts", "flag_frame"]

# pixels astroscrappy must not look at: their values say nothing about a hit
_NOT_FOR_COSMICS = (MaskBits.NONFINITE_INPUT | MaskBits.SATURATED | MaskBits.FLAT_INVALID
                    | MaskBits.NO_MASTER_DATA | MaskBits.BAD | MaskBits.BLEED)


class CosmicRayMode(StrEnum):
    """What is done about cosmic rays on a calibrated light."""

    off = "off"
    """Nothing is detected."""
    flag = "flag"
    """Hits are found with astroscrappy and flagged `MaskBits.COSMIC_RAY`; values are kept."""
    clean = "clean"
    """Hits are flagged and their values replaced by astroscrappy's (the error is kept)."""


class FillMode(StrEnum):
    """What is done with the values of flagged pixels."""

    none = "none"
    """Flagged pixels keep their calibrated value (no silent interpolation)."""
    interpolate = "interpolate"
    """Flagged pixels are interpolated along rows and flagged `MaskBits.INTERPOLATED` too."""


@dataclass(frozen=True, kw_only=True)
class QualityParams:
    """What the quality step of a calibrated frame does.

    Parameters
    ----------
    cosmic_rays : CosmicRayMode
        ``off``, ``flag`` or ``clean``.
    cosmic : CosmicRayParams
        astroscrappy's parameters.
    bleed_fraction : float
        A bleed trail is followed from a saturated pixel along its column while the raw value stays
        above ``bleed_fraction * saturation``.
    bleed_radius : int
        Grow bleed trails by this many pixels (0: not grown).
    readout_axis : {0, 1}
        The axis charge bleeds along: 0 for columns (the usual case), 1 for rows.
    fill : FillMode
        ``none`` or ``interpolate``.

    Examples
    --------
    >>> QualityParams(cosmic_rays="flag").to_dict()["cosmic_rays"]
    'flag'
    """

    cosmic_rays: CosmicRayMode = CosmicRayMode.off
    cosmic: CosmicRayParams = CosmicRayParams()
    bleed_fraction: float = DEFAULT_BLEED_FRACTION
    bleed_radius: int = 0
    readout_axis: int = 0
    fill: FillMode = FillMode.none

    def __post_init__(self):
        setter = object.__setattr__.__get__(self)
        setter("cosmic_rays", parse_enum(CosmicRayMode, self.cosmic_rays, key="cosmic_rays"))
        setter("fill", parse_enum(FillMode, self.fill, key="fill"))
        if not isinstance(self.cosmic, CosmicRayParams):
            raise ConfigError("cosmic", f"expected CosmicRayParams, got {self.cosmic!r}")
        fraction = parse_number(self.bleed_fraction, key="bleed_fraction", strict=True)
        if fraction > 1:
            raise ConfigError("bleed_fraction", f"must be in (0, 1], got {fraction}")
        setter("bleed_fraction", fraction)
        setter("bleed_radius", parse_int(self.bleed_radius, key="bleed_radius", minimum=0))
        if self.readout_axis not in (0, 1) or isinstance(self.readout_axis, bool):
            raise ConfigError("readout_axis", f"expected 0 or 1, got {self.readout_axis!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (round-trips through `from_dict`)."""
        return {"cosmic_rays": self.cosmic_rays.value, "cosmic": self.cosmic.to_dict(),
                "bleed_fraction": self.bleed_fraction, "bleed_radius": self.bleed_radius,
                "readout_axis": self.readout_axis, "fill": self.fill.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, key: str = "quality") -> QualityParams:
        """Build from a mapping; an unknown or invalid field raises `ConfigError` naming it."""
        check_keys(cls, data, key=key)
        data = dict(data)
        if "cosmic" in data and not isinstance(data["cosmic"], CosmicRayParams):
            data["cosmic"] = CosmicRayParams.from_dict(dict(data["cosmic"] or {}), key=f"{key}.cosmic")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{key}.{err.key}", err.reason) from None


def flag_frame(raw_area: np.ndarray, image: np.ndarray, error: np.ndarray, mask: np.ndarray, *,
               params: QualityParams, bad_pixels: np.ndarray | None = None,
               saturation: float | None = None, gain: float = 1.0, read_noise: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add bad pixels, bleed trails and cosmic rays to a calibrated frame's mask; optionally fill.

    Parameters
    ----------
    raw_area : numpy.ndarray
        The raw frame in ADU over the image area, before any correction (bleed trails are
        followed on it, like saturation).
    image, error : numpy.ndarray
        The calibrated image and its 1-sigma error, ADU.
    mask : numpy.ndarray
        Its `MaskBits` so far (uint8); not modified.
    params : QualityParams
        What to do.
    bad_pixels : numpy.ndarray, optional
        Bad-pixel mask over the image area, nonzero = bad (the night's ``bpm`` merged with the
        user's own): those pixels get `MaskBits.BAD`.
    saturation : float, optional
        Raw ADU of saturation; no bleed trails without it.
    gain, read_noise : float
        e-/ADU and e-, for the cosmic-ray noise model.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Image (changed only where hits are cleaned or flagged pixels filled), error (changed only
        where filled: the interpolation's propagated error) and the new mask.

    Notes
    -----
    Flagged pixels keep their values unless ``cosmic_rays="clean"`` (hits replaced by the mean of
    their unflagged 5x5 neighbours, error kept: it already carries the hit's own Poisson term)
    or ``fill="interpolate"`` (linear along rows; error ``sqrt((1-t)^2 e_a^2 + t^2 e_b^2)``).

    Examples
    --------
    >>> raw = np.full((8, 8), 100.0, np.float32); raw[2:5, 3] = [700.0, 1000.0, 800.0]
    >>> image, error = raw - 100.0, np.full((8, 8), 5.0, np.float32)
    >>> mask = np.zeros((8, 8), np.uint8)
    >>> bpm = np.zeros((8, 8), np.uint8); bpm[6, 6] = 1
    >>> _, _, out = flag_frame(raw, image, error, mask, params=QualityParams(), bad_pixels=bpm,
    ...                        saturation=1000.0)
    >>> int(out[6, 6]) == MaskBits.BAD, [int(v) for v in out[1:6, 3]]
    (True, [0, 32, 32, 32, 0])
    """
    mask = np.array(mask, dtype=MASK_DTYPE, copy=True)
    if bad_pixels is not None:
        mask[np.asarray(bad_pixels) != 0] |= np.uint8(MaskBits.BAD)
    if saturation is not None:
        trails = bleed_trails(raw_area, saturation=saturation, fraction=params.bleed_fraction,
                              axis=params.readout_axis)
        if params.bleed_radius:
            trails = grow_mask(trails, radius=params.bleed_radius)
        mask[trails] |= np.uint8(MaskBits.BLEED)
    if params.cosmic_rays != CosmicRayMode.off:
        variance = np.where(np.isfinite(error), error.astype(np.float64) ** 2, np.nan)
        hits, cleaned = detect_cosmics_block(
            image, gain=gain, read_noise=read_noise, variance=variance,
            bad=(mask & _NOT_FOR_COSMICS) != 0, **params.cosmic.to_dict())
        mask[hits] |= np.uint8(MaskBits.COSMIC_RAY)
        if params.cosmic_rays == CosmicRayMode.clean:
            image = np.where(hits, cleaned, image).astype(np.float32)
    if params.fill == FillMode.interpolate:
        image, error, done = interpolate_rows(image, (mask & DEFAULT_FILL_BITS) != 0, error=error)
        mask[done] |= np.uint8(MaskBits.INTERPOLATED)
    return image, error, mask


def flag_counts(mask: np.ndarray) -> dict[str, int]:
    """Pixels flagged per named plane, for the report.

    Examples
    --------
    >>> flag_counts(np.array([[1, 3], [0, 64]], np.uint8))["SATURATED"]
    1
    """
    return {bit.name: int(np.count_nonzero(mask & np.uint8(bit))) for bit in MaskBits}
