"""The bad-pixel mask of a night, lazily: hot pixels from the master dark, ``ccdmask`` on the master flat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.masks import MASK_DTYPE, MaskBits, merge_masks
from ccdflow.array.params import check_keys, parse_int, parse_number, to_plain_dict
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError
from ccdflow.kernels.badpixels import ccdmask, hot_pixels, illumination

__all__ = ["BadPixelParams", "bad_pixel_mask"]


@dataclass(frozen=True, kw_only=True)
class BadPixelParams:
    """How the bad-pixel mask is found in the masters (IRAF ``ccdmask``'s names for the flat).

    Parameters
    ----------
    hot_sigma : float
        Hot pixel: dark rate above its median by more than this many robust sigmas (MAD-based).
    ncmed, nlmed : int
        Moving-median box on the flat, columns and lines (odd, >= 3 columns).
    ncsig, nlsig : int
        Blocks in which the flat's sigma is measured, columns and lines (>= 10 each).
    lsigma, hsigma : float
        Thresholds below and above the flat's local level, in sigmas.
    ngood : int
        Good runs shorter than this between bad pixels of a column are flagged too.
    min_deviation : float
        A flat pixel is only flagged if its response also differs from the local level by more
        than this fraction. ccdmask is meant for the ratio of two flats, where the illumination
        and the real pixel response cancel; on a master flat of high signal-to-noise, real
        structure (dust shadows, a spectrograph's slit pattern) of a few percent is many sigma
        and would otherwise be flagged as bad.

    Examples
    --------
    >>> BadPixelParams(lsigma=8).to_dict()["lsigma"]
    8.0
    """

    hot_sigma: float = 5.0
    ncmed: int = 7
    nlmed: int = 7
    ncsig: int = 15
    nlsig: int = 15
    lsigma: float = 6.0
    hsigma: float = 6.0
    ngood: int = 5
    min_deviation: float = 0.1

    def __post_init__(self):
        setter = object.__setattr__.__get__(self)
        for key in ("hot_sigma", "lsigma", "hsigma"):
            setter(key, parse_number(getattr(self, key), key=key, strict=True))
        setter("ncmed", parse_int(self.ncmed, key="ncmed", minimum=1))
        setter("nlmed", parse_int(self.nlmed, key="nlmed", minimum=1))
        # fewer than ~100 pixels per block make the percentile sigma too noisy (IRAF's advice)
        setter("ncsig", parse_int(self.ncsig, key="ncsig", minimum=10))
        setter("nlsig", parse_int(self.nlsig, key="nlsig", minimum=10))
        setter("ngood", parse_int(self.ngood, key="ngood", minimum=0))
        setter("min_deviation", parse_number(self.min_deviation, key="min_deviation"))

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain values (round-trips through `from_dict`)."""
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, key: str = "bad_pixels") -> BadPixelParams:
        """Build from a mapping; an unknown or invalid field raises `ConfigError` naming ``key.field``."""
        check_keys(cls, data, key=key)
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{key}.{err.key}", err.reason) from None

    def flat_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `ccdflow.kernels.badpixels.ccdmask`."""
        names = ("ncmed", "nlmed", "ncsig", "nlsig", "lsigma", "hsigma", "ngood")
        return {name: getattr(self, name) for name in names}


def _flat_defects(flat: np.ndarray, *, params: BadPixelParams) -> np.ndarray:
    # the illumination is divided out first, so that vignetting running into the detector's
    # edges is not mistaken for defects by ccdmask's edge-sliding median box
    model = illumination(flat)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(model > 0, flat / model, np.nan)
    strong = ~(np.abs(ratio - 1.0) <= params.min_deviation)  # NaN counts as strong
    return ccdmask(ratio, **params.flat_kwargs()) & strong


def _by_amplifier(data: np.ndarray, *, find: Callable[..., np.ndarray],
                  areas: tuple[Region, ...], **kwargs: Any) -> np.ndarray:
    """``find`` over each amplifier's area on its own; a pixel outside them is bad if not finite."""
    if not areas:
        return find(data, **kwargs)
    out = ~np.isfinite(data)
    for area in areas:
        out[area.slices] = find(data[area.slices], **kwargs)
    return out


def _whole(array: Any) -> da.Array:
    # Both tests need the whole frame (a global median for the dark, whole columns for the flat's
    # column sums): one block. A master is one frame (64 MB at 4k x 4k float32), so this is cheap.
    array = da.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"a master must be 2-D, got shape {array.shape}")
    return array.rechunk(array.shape)


def bad_pixel_mask(
    *,
    dark: Any = None,
    flat: Any = None,
    user_mask: Any = None,
    params: BadPixelParams = BadPixelParams(),
    amplifiers: Sequence[Region] = (),
) -> da.Array:
    """Lazy bad-pixel mask (`MaskBits.BAD` set) from a master dark rate, a master flat and a user's mask.

    Parameters
    ----------
    dark : array, optional
        Master dark (rate or any fixed exposure), 2-D: its hot pixels.
    flat : array, optional
        Master flat (or ratio of two flats), 2-D: dead, cold and hot pixels and bad column segments.
    user_mask : array, optional
        The user's own mask, nonzero = bad, merged with a plain OR.
    params : BadPixelParams
    amplifiers : sequence of Region, optional
        The areas of the detector's amplifiers in the masters: the dark and the flat are then
        tested amplifier by amplifier, each against its own level and spread (in ADU every
        amplifier has its own gain, so a master steps at their seams). Empty: the whole frame.

    Returns
    -------
    dask.array.Array of uint8
        `MaskBits.BAD` where any source calls the pixel bad, 0 elsewhere; one chunk (nothing is
        computed here).

    Raises
    ------
    ValueError
        If nothing is given, an input is not 2-D, or the shapes differ.

    Examples
    --------
    >>> dark = np.full((40, 40), 0.1); dark[5, 6] = 50.0
    >>> np.argwhere(bad_pixel_mask(dark=dark).compute()).tolist()
    [[5, 6]]
    """
    given = [a for a in (dark, flat, user_mask) if a is not None]
    if not given:
        raise ValueError("bad_pixel_mask needs a dark, a flat or a user mask")
    shapes = {tuple(np.shape(a)) for a in given}
    if len(shapes) != 1:
        raise ValueError(f"dark, flat and user mask shapes differ: {sorted(shapes)}")
    shape = shapes.pop()
    areas = tuple(amplifiers) if len(amplifiers) > 1 else ()
    mask = da.zeros(shape, dtype=MASK_DTYPE, chunks=shape)
    bit = MASK_DTYPE.type(MaskBits.BAD)
    if dark is not None:
        hot = _whole(dark).map_blocks(_by_amplifier, find=hot_pixels, areas=areas,
                                      nsigma=params.hot_sigma, dtype=bool,
                                      meta=np.empty((0, 0), bool))
        mask = mask | hot.astype(MASK_DTYPE) * bit
    if flat is not None:
        cold = _whole(flat).map_blocks(_by_amplifier, find=_flat_defects, areas=areas,
                                       params=params, dtype=bool, meta=np.empty((0, 0), bool))
        mask = mask | cold.astype(MASK_DTYPE) * bit
    if user_mask is not None:
        mask = merge_masks(mask, da.asarray(user_mask).rechunk(shape))
    return mask
