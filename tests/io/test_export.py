"""Image exports: static pictures, self-contained HTML, plotly JSON, zscale limits, optional deps."""

from __future__ import annotations

import base64
import json
import struct
import sys
from pathlib import Path

import numpy as np
import plotly.io as pio
import pytest
from astropy.visualization import ZScaleInterval

from ccdflow.errors import ConfigError
from ccdflow.io.export import save_html, save_image, to_figure, to_json, zscale_limits

MAGIC = {".png": b"\x89PNG", ".jpg": b"\xff\xd8", ".jpeg": b"\xff\xd8", ".pdf": b"%PDF"}


@pytest.fixture
def image() -> np.ndarray:
    """A 254 x 1024 frame, like a long-slit spectrum, with a few NaN pixels."""
    rng = np.random.default_rng(3)
    img = rng.normal(1000.0, 20.0, size=(254, 1024)).astype(np.float32)
    img[100:110, 500:520] = np.nan
    return img


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def heatmap_z(trace) -> np.ndarray:
    """The heatmap's z, whether plotly kept it as an array or as a base64 typed array."""
    z = trace.z
    if isinstance(z, dict):
        shape = tuple(int(s) for s in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.asarray(z, dtype=float)


def no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part"]


def test_png_keeps_aspect_ratio(image, tmp_path):
    out = save_image(image, tmp_path / "wide.png")
    assert out == tmp_path / "wide.png"
    width, height = png_size(out)
    assert width / height == pytest.approx(1024 / 254, rel=0.05)
    assert width == 1024  # one image pixel per output pixel at the default size
    no_leftovers(tmp_path)


def test_title_adds_a_strip_above(image, tmp_path):
    width, height = png_size(save_image(image, tmp_path / "titled.png", title="M67 V", dpi=100))
    assert width == 1024
    assert height == pytest.approx(254 + 40, abs=2)


def test_tiny_image_is_enlarged(tmp_path):
    width, height = png_size(save_image(np.ones((8, 16), dtype=np.float32), tmp_path / "tiny.png"))
    assert (width, height) == (512, 256)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".pdf", ".PNG"])
def test_binary_formats_magic(image, tmp_path, suffix):
    out = save_image(image, tmp_path / f"img{suffix}")
    assert out.read_bytes().startswith(MAGIC[suffix.lower()])
    no_leftovers(tmp_path)


def test_svg(image, tmp_path):
    data = save_image(image[:32, :64], tmp_path / "img.svg").read_bytes()
    assert data.startswith((b"<?xml", b"<svg"))
    assert b"<svg" in data
    no_leftovers(tmp_path)


def test_unknown_suffix_names_it(image, tmp_path):
    with pytest.raises(ConfigError, match=r"path: unsupported image suffix '\.tiff'"):
        save_image(image, tmp_path / "img.tiff")
    with pytest.raises(ConfigError, match=r"unsupported image suffix ''"):
        save_image(image, tmp_path / "noext")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(image, tmp_path):
    with pytest.raises(ConfigError, match="cmap: unknown matplotlib colormap 'nope'"):
        save_image(image, tmp_path / "a.png", cmap="nope")
    with pytest.raises(ConfigError, match="dpi: must be positive"):
        save_image(image, tmp_path / "a.png", dpi=0)
    with pytest.raises(ConfigError, match=r"image: expected a 2-D array, got shape \(3, 4, 5\)"):
        save_image(np.zeros((3, 4, 5)), tmp_path / "a.png")
    with pytest.raises(ConfigError, match="max_pixels: must be positive"):
        to_figure(image, max_pixels=0)
    assert list(tmp_path.iterdir()) == []


def test_overwrites_existing_file(image, tmp_path):
    target = tmp_path / "img.png"
    target.write_bytes(b"old")
    save_image(image, target)
    assert target.read_bytes().startswith(b"\x89PNG")
    no_leftovers(tmp_path)


def test_all_nan_image(tmp_path):
    nan = np.full((20, 30), np.nan, dtype=np.float32)
    assert png_size(save_image(nan, tmp_path / "nan.png"))[0] == 512
    fig = pio.from_json(to_json(nan))
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)


def test_zscale_matches_astropy(image):
    finite = image[np.isfinite(image)]
    expected = ZScaleInterval().get_limits(finite)
    limits = zscale_limits(image)
    assert limits == pytest.approx(expected)
    assert all(isinstance(v, float) for v in limits)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_zscale_ignores_non_finite(bad):
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    spoiled = img.copy()
    spoiled[0, 0] = bad
    assert zscale_limits(spoiled) == pytest.approx(ZScaleInterval().get_limits(img.ravel()[1:]))


def test_zscale_all_nan():
    assert zscale_limits(np.full((5, 5), np.nan)) == (0.0, 1.0)


def test_html_is_self_contained(image, tmp_path):
    out = save_html(image, tmp_path / "reduced.html", title="M67 V")
    text = out.read_text(encoding="utf-8")
    assert "<html" in text
    assert "plotly.js v" in text  # the inlined library's licence header
    assert '<script src="http' not in text
    assert out.stat().st_size > 1_000_000
    assert "M67 V" in text
    no_leftovers(tmp_path)


def test_json_round_trip(image):
    text = to_json(image, title="M67 V")
    assert json.loads(text)["data"][0]["type"] == "heatmap"
    fig = pio.from_json(text)
    trace = fig.data[0]
    assert trace.type == "heatmap"
    z = heatmap_z(trace)
    assert z.shape == image.shape
    np.testing.assert_array_equal(z, image)  # NaN kept in place
    assert (trace.zmin, trace.zmax) == pytest.approx(zscale_limits(image))
    assert fig.layout.title.text == "M67 V"


def test_figure_layout(image):
    fig = to_figure(image)
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.yaxis.scaleratio == 1
    assert fig.layout.yaxis.autorange != "reversed"  # row 0 at the bottom
    np.testing.assert_array_equal(fig.data[0].y, np.arange(254))
    np.testing.assert_array_equal(fig.data[0].x, np.arange(1024))


def test_big_image_is_downsampled():
    big = np.arange(2000 * 2000, dtype=np.float32).reshape(2000, 2000)
    fig = pio.from_json(to_json(big))
    z = heatmap_z(fig.data[0])
    assert z.size <= 1_000_000
    assert z.shape == (1000, 1000)
    np.testing.assert_array_equal(z, big[::2, ::2])
    small = to_figure(big, max_pixels=1000)
    assert heatmap_z(small.data[0]).size <= 1000
    # axes keep the original pixel coordinates
    assert np.asarray(small.data[0].x)[-1] <= 1999 and np.asarray(small.data[0].x)[1] > 1


@pytest.mark.parametrize("module", ["plotly", "matplotlib"])
def test_missing_plot_dependency(monkeypatch, image, tmp_path, module):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'pip install "ccdflow\[plots\]"'):
        if module == "plotly":
            save_html(image, tmp_path / "a.html")
        else:
            save_image(image, tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
