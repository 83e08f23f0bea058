"""Exports of a reduced 2-D image: static pictures (matplotlib) and interactive plotly figures.

matplotlib and plotly are imported only when used; plotly is an optional extra
(``pip install "ccdflow[plots]"``).
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ccdflow.errors import ConfigError
from ccdflow.io.write import atomic_path

if TYPE_CHECKING:
    import plotly.graph_objects

__all__ = ["colormap", "save_html", "save_image", "to_figure", "to_json", "zscale_limits"]

_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}
_MIN_SIDE_PX = 512  # tiny images are enlarged so that the picture is still viewable
_TITLE_IN = 0.4  # height of the title strip above the image, in inches


def _require(name: str) -> ModuleType:
    """Import an optional plotting module, or explain how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{name} is needed to export images; install it with: pip install \"ccdflow[plots]\""
        ) from exc


def colormap(name: str):
    """A matplotlib colormap by name; an unknown name is a `ConfigError` naming ``cmap``.

    Examples
    --------
    >>> colormap("gray").name
    'gray'
    """
    try:
        return _require("matplotlib").colormaps[name]
    except KeyError as exc:
        raise ConfigError("cmap", f"unknown matplotlib colormap {name!r}") from exc


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ConfigError("image", f"expected a 2-D array, got shape {image.shape}")
    return image


def zscale_limits(image: np.ndarray) -> tuple[float, float]:
    """Display limits of an image by the IRAF zscale algorithm, ignoring non-finite pixels.

    Parameters
    ----------
    image : numpy.ndarray
        The image (any shape); NaN and infinite pixels are ignored.

    Returns
    -------
    tuple of float
        ``(vmin, vmax)`` from `astropy.visualization.ZScaleInterval`; ``(0.0, 1.0)`` if no pixel is finite.

    Examples
    --------
    >>> zscale_limits(np.full((4, 4), np.nan))
    (0.0, 1.0)
    """
    from astropy.visualization import ZScaleInterval

    finite = np.asarray(image)[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    vmin, vmax = ZScaleInterval().get_limits(finite)
    return float(vmin), float(vmax)


def save_image(image: np.ndarray, path: str | os.PathLike, *, title: str | None = None,
               cmap: str = "gray", dpi: int = 100) -> Path:
    """Write the image as a static picture with zscale limits, atomically.

    The picture keeps the image's aspect ratio with no axes: one image pixel per output pixel (tiny
    images are enlarged so their longer side is 512 px), row 0 at the bottom. A title, if given, sits in a
    strip above the image. NaN pixels are left transparent (white in JPEG).

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    path : str or path-like
        Output file; its suffix picks the format: ``.png``, ``.jpg``/``.jpeg``, ``.svg`` or ``.pdf``.
    title : str, optional
        Text shown above the image.
    cmap : str
        A matplotlib colormap name.
    dpi : int
        Resolution of the output, in dots per inch.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ConfigError
        If the suffix, ``cmap`` or ``dpi`` is not supported, or ``image`` is not 2-D.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "reduced.png"
    >>> save_image(np.random.default_rng(0).normal(size=(64, 256)), out, title="M67 V") == out
    True
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError("path", f"unsupported image suffix {path.suffix!r}; use one of {sorted(_FORMATS)}")
    if dpi <= 0:
        raise ConfigError("dpi", f"must be positive, got {dpi}")
    image = _check_image(image)
    figure = _require("matplotlib.figure")
    backend = _require("matplotlib.backends.backend_agg")
    colors = colormap(cmap)

    height, width = image.shape
    scale = max(1.0, _MIN_SIDE_PX / max(height, width))
    width_in, image_in = width * scale / dpi, height * scale / dpi
    title_in = _TITLE_IN if title else 0.0
    fig = figure.Figure(figsize=(width_in, image_in + title_in), dpi=dpi, facecolor="white")
    backend.FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, image_in / (image_in + title_in)))
    ax.set_axis_off()
    vmin, vmax = zscale_limits(image)
    ax.imshow(image, cmap=colors, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest",
              aspect="auto")
    if title:
        fig.text(0.5, 1.0 - 0.5 * title_in / (image_in + title_in), title, ha="center", va="center")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, facecolor="white")
    return path


def to_figure(image: np.ndarray, *, title: str | None = None,
              max_pixels: int = 1_000_000) -> plotly.graph_objects.Figure:
    """Build an interactive plotly heatmap of the image with zscale limits.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image; NaN pixels are shown as gaps.
    title : str, optional
        Figure title.
    max_pixels : int
        Above this many pixels the image is subsampled by the smallest integer stride (every n-th row
        and column) that fits, so a large frame does not make a huge page. Axes keep the original pixel
        coordinates.

    Returns
    -------
    plotly.graph_objects.Figure
        One `~plotly.graph_objects.Heatmap`, row 0 at the bottom, square pixels.

    Raises
    ------
    ConfigError
        If ``image`` is not 2-D or ``max_pixels`` is not positive.
    ImportError
        If plotly is not installed.

    Examples
    --------
    >>> fig = to_figure(np.zeros((2000, 2000), dtype=np.float32), title="flat")
    >>> fig.data[0].type
    'heatmap'
    """
    image = _check_image(image)
    if max_pixels <= 0:
        raise ConfigError("max_pixels", f"must be positive, got {max_pixels}")
    _require("plotly")
    go = _require("plotly.graph_objects")
    height, width = image.shape
    stride = max(1, math.ceil(math.sqrt(image.size / max_pixels)))
    while math.ceil(height / stride) * math.ceil(width / stride) > max_pixels:
        stride += 1
    vmin, vmax = zscale_limits(image)
    heatmap = go.Heatmap(z=image[::stride, ::stride], x=np.arange(0, width, stride),
                         y=np.arange(0, height, stride), zmin=vmin, zmax=vmax, colorscale="gray")
    fig = go.Figure(heatmap)
    fig.update_layout(title=title)
    fig.update_xaxes(constrain="domain")
    # y increases upwards (row 0 at the bottom) and one x unit equals one y unit: square pixels
    fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    return fig


def save_html(image: np.ndarray, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the interactive figure as a self-contained HTML page (plotly.js inlined), atomically.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    path : str or path-like
        Output ``.html`` file; it needs no network to be viewed (about 5 MB for the library alone).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ConfigError
        If ``image`` is not 2-D.
    ImportError
        If plotly is not installed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "reduced.html"
    >>> save_html(np.zeros((64, 256), dtype=np.float32), out) == out
    True
    """
    fig = to_figure(image, title=title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    return path


def to_json(image: np.ndarray, *, title: str | None = None) -> str:
    """Serialise the interactive figure as plotly JSON, renderable by any plotly binding.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        The figure as JSON; `plotly.io.from_json` reads it back.

    Raises
    ------
    ConfigError
        If ``image`` is not 2-D.
    ImportError
        If plotly is not installed.

    Examples
    --------
    >>> import json
    >>> json.loads(to_json(np.zeros((8, 8), dtype=np.float32)))["data"][0]["type"]
    'heatmap'
    """
    return to_figure(image, title=title).to_json()
