"""Small inline pictures of images (PNG as ``data:`` URIs) and robust image statistics, for pages.

matplotlib (its colormaps) and Pillow (its PNG writer, which matplotlib brings) are imported only
when a picture is made, so that importing ccdflow stays light.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import numpy as np

from ccdflow.errors import ConfigError
from ccdflow.io.export import _require, colormap, zscale_limits

__all__ = ["ImageStats", "downsample", "image_stats", "png_data_uri"]


def downsample(image: np.ndarray, *, max_side: int) -> np.ndarray:
    """Shrink a 2-D image by block means so that its longer side is at most ``max_side`` pixels.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; NaN pixels are ignored within a block (a block of NaN only stays NaN).
    max_side : int
        Longest side wanted (> 0). An image already that small is returned as float32, unchanged.

    Returns
    -------
    numpy.ndarray
        float32 image of ``(ny // f, nx // f)`` pixels with the smallest integer factor ``f`` that
        fits; edge rows and columns that do not fill a whole block are dropped.

    Raises
    ------
    ConfigError
        If ``image`` is not 2-D or ``max_side`` is not positive.

    Examples
    --------
    >>> downsample(np.arange(16.0).reshape(4, 4), max_side=2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ConfigError("image", f"expected a 2-D array, got shape {image.shape}")
    if max_side <= 0:
        raise ConfigError("max_side", f"must be positive, got {max_side}")
    factor = max(1, math.ceil(max(image.shape) / max_side))
    if factor == 1:
        return image
    ny, nx = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:ny * factor, :nx * factor].reshape(ny, factor, nx, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-NaN blocks stay NaN on purpose
        return np.where(counts > 0, sums / counts, np.nan).astype(np.float32)


@dataclass(frozen=True)
class ImageStats:
    """Robust level (``median``), spread (``std``) and ``finite`` pixel fraction of an image."""

    median: float
    std: float
    finite: float

    def __post_init__(self):
        if not 0.0 <= self.finite <= 1.0:
            raise ConfigError("finite", f"must be a fraction in [0, 1], got {self.finite}")


def image_stats(image: np.ndarray) -> ImageStats:
    """Robust level and spread of an image, ignoring non-finite pixels.

    Parameters
    ----------
    image : numpy.ndarray
        Any shape.

    Returns
    -------
    ImageStats
        ``median`` and ``std`` = 1.4826 * median absolute deviation (NaN when no pixel is finite),
        and ``finite``, the fraction of finite pixels.

    Examples
    --------
    >>> s = image_stats(np.array([1.0, 2.0, 3.0, np.nan]))
    >>> (s.median, round(s.std, 4), s.finite)
    (2.0, 1.4826, 0.75)
    """
    from astropy.stats import mad_std

    data = np.asarray(image, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return ImageStats(median=math.nan, std=math.nan, finite=0.0)
    return ImageStats(median=float(np.median(finite)), std=float(mad_std(finite)),
                      finite=finite.size / data.size)


def png_data_uri(image: np.ndarray, *, max_side: int = 256, cmap: str = "gray",
                 limits: tuple[float, float] | None = None) -> str:
    """Render a 2-D image as a small PNG, row 0 at the bottom, and return it as a ``data:`` URI.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; NaN pixels are transparent.
    max_side : int
        Longest side of the picture in pixels; larger images are shrunk by block means first.
    cmap : str
        A matplotlib colormap name.
    limits : tuple of float, optional
        Display limits ``(vmin, vmax)``; default: zscale of the shrunk image.

    Returns
    -------
    str
        ``data:image/png;base64,...``, to be used as an ``<img src>`` with no file or network.

    Raises
    ------
    ConfigError
        If ``image`` is not 2-D, ``max_side`` is not positive or ``cmap`` is unknown.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> png_data_uri(np.zeros((8, 8)), max_side=4)[:22]
    'data:image/png;base64,'
    """
    small = downsample(image, max_side=max_side)
    colors = colormap(cmap)
    pil_image = _require("PIL.Image")
    vmin, vmax = limits if limits is not None else zscale_limits(small)
    if not vmax > vmin:  # a flat image (e.g. a constant count map) still needs a valid range
        vmin, vmax = vmin - 0.5, vmin + 0.5
    # A paletted PNG, one byte a pixel: 255 colours of the map and a transparent one for NaN.
    # It is a third of the size of an RGBA one (1,000 lights: a 20 MB page instead of 54 MB).
    with np.errstate(invalid="ignore"):
        levels = np.clip((small - vmin) / (vmax - vmin), 0.0, 1.0)
    index = np.where(np.isfinite(small), np.rint(np.nan_to_num(levels) * 254), _TRANSPARENT)
    picture = pil_image.fromarray(np.ascontiguousarray(index[::-1], dtype=np.uint8), mode="P")
    palette = np.rint(np.asarray(colors(np.linspace(0.0, 1.0, 255)))[:, :3] * 255)
    picture.putpalette([*palette.astype(np.uint8).ravel().tolist(), 0, 0, 0])
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", transparency=_TRANSPARENT)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_TRANSPARENT = 255  # the palette index of NaN pixels
