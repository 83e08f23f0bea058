"""The night page ``report.html``: written by every night, rebuilt from the output folder alone."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std

from ccdflow.cli import write_synthetic_night
from ccdflow.errors import ConfigError
from ccdflow.io.report_cache import CACHE_NAME, ProductSummaries
from ccdflow.io.report_page import render_report_page, write_report_page, write_report_page_or_warn
from ccdflow.night import load_config, reduce_night

BAD = "bad<i>&.fits"  # a frame whose name is also HTML: it must come out escaped


def _reduce(folder: Path, *, bad_frame: bool = True):
    config_path = write_synthetic_night(folder, size=32, n_light=2, seed=3)
    if bad_frame:
        (folder / "raw" / BAD).write_text("not a FITS file")
        with (folder / "night.csv").open("a") as csv:
            csv.write(f"light, raw/{BAD}\n")
    config = load_config(config_path)
    report = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    return config.output, report


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    output, report = _reduce(tmp_path_factory.mktemp("night"))
    return output, report, (output / "report.html").read_text()


def _row(page: str, name: str) -> str:
    table = page[page.index("<h2>Lights"):]
    rows = [row for row in table.split("<tr") if f"<b>{name}</b>" in row]
    assert len(rows) == 1, name
    return rows[0]


def test_every_night_writes_a_self_contained_page(night):
    output, _, page = night
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", page)
    assert "url(http" not in page and "@import" not in page and "<link" not in page
    assert (output / "report.html").stat().st_size < 1_000_000


def test_failures_come_first_with_their_reasons_escaped(night):
    output, report, page = night
    assert not report.ok
    failure = page.index('id="failures"')
    assert failure < page.index("<h2>Summary</h2>") < page.index("<h2>Masters</h2>")
    escaped = "bad&lt;i&gt;&amp;.fits"
    assert BAD not in page and "<i>" not in page
    assert page.index(escaped) > failure
    reason = next(why for path, why in report.failures.items() if path.endswith(BAD))
    assert reason.startswith("FrameReadError") or "Error" in reason.split(":")[0]
    assert reason.split(":")[0] in page[failure:page.index("<h2>Summary</h2>")]
    assert "1 failure(s)" in page


def test_summary_counts_and_stage_times(night):
    _, report, page = night
    counts = {label: int(n)
              for n, label in re.findall(r'<div class="n">(\d+)</div><div>([a-z ]+)</div>', page)}
    # bias, dark, two flats and a bad-pixel mask per filter
    assert counts == {"lights done": 4, "lights reused": 0, "lights failed": 1,
                      "masters built": 6, "masters reused": 0, "masters failed": 0}
    for stage, seconds in report.seconds.items():
        assert f"<td>{stage}</td><td class=num>{seconds:.2f} s</td>" in page


def test_lights_in_input_order_with_their_statistics(night):
    output, report, page = night
    names = re.findall(r"<b>(light_[^<]+)</b>", page)
    assert names == ["light_V_000.fits", "light_V_001.fits", "light_R_000.fits", "light_R_001.fits"]
    for name in names:
        with fits.open(output / "lights" / name) as hdus:
            image = hdus[0].data.astype(np.float64)
            flagged = np.count_nonzero(hdus["MASK"].data) / image.size
            exptime = hdus[0].header["EXPTIME"]
        finite = image[np.isfinite(image)]
        row = _row(page, name)
        assert f"<td>{np.median(finite):.5g}</td>" in row
        assert f"<td>{mad_std(finite):.4g}</td>" in row
        assert f"<td>{flagged:.3%}</td>" in row
        assert f"<td>{exptime:.4g}</td>" in row
        assert 'class="thumb"' in row
    assert 'class="failed"' in _row(page, "bad&lt;i&gt;&amp;.fits")


def test_masters_with_count_map_and_rejected_fraction(night):
    output, report, page = night
    combined = {n: e for n, e in report.masters.items() if not n.startswith("bpm")}
    assert sorted(combined) == ["bias", "dark", "flat_R", "flat_V"]
    for name, entry in combined.items():
        card = page[page.index(f"<h3>{name}</h3>"):]
        card = card[:card.index("</table>")]
        with fits.open(output / "masters" / f"{name}.fits") as hdus:
            data = hdus[0].data.astype(np.float64)
            count = hdus["NCOMBINE"].data
        assert f"{entry['rejected_fraction']:.3%}" in card
        assert f"{np.median(data):.5g}" in card
        assert f"{count.min()}&ndash;{count.max()}</td>" in card
        uris = re.findall(r'src="(data:[^"]+)"', card)
        assert len(uris) == 2  # image and count map
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(uris[1].split(",", 1)[1])))
        assert pixels.shape == (*count.shape, 4)


def test_rebuilt_from_a_moved_folder_with_a_changed_mask(night, tmp_path):
    output, _, page = night
    moved = tmp_path / "moved"
    shutil.copytree(output, moved, ignore=shutil.ignore_patterns("work.zarr", "report.html"))
    light = moved / "lights" / "light_R_000.fits"
    with fits.open(light, mode="update") as hdus:
        hdus["MASK"].data[:] = 0
        hdus["MASK"].data[:8] = 2  # a quarter of the 32 rows flagged
    path = write_report_page(moved)
    assert path == moved / "report.html"
    rebuilt = path.read_text()
    assert rebuilt.count("<img") == page.count("<img")
    assert "<td>25.000%</td>" in _row(rebuilt, "light_R_000.fits")


def test_without_report_json(tmp_path):
    with pytest.raises(ConfigError, match="no readable report.json"):
        render_report_page(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ConfigError, match="report.json: not valid JSON"):
        write_report_page(tmp_path)


def test_a_reused_night_and_a_big_master_stay_small(tmp_path):
    output = tmp_path / "out"
    (output / "masters").mkdir(parents=True)
    image = np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(image), fits.ImageHDU(np.full_like(image, 5, dtype=np.int16),
                                                        name="NCOMBINE")]).writeto(
        output / "masters" / "bias.fits")
    report = {"output": str(output), "seconds": {"total": 1.0}, "warnings": ["<only two frames>"],
              "masters": {"bias": {"status": "reused", "output": "/elsewhere/masters/bias.fits",
                                   "inputs": ["a", "b"], "seconds": 0.0, "rejected_fraction": 0.01}},
              "frames": {"/raw/l.fits": {"status": "reused", "output": "/x/lights/l.fits",
                                          "seconds": 0.0}},
              "failures": {}}
    (output / "report.json").write_text(json.dumps(report))
    page = write_report_page(output).read_text()
    assert len(page) < 400_000  # 2048x2048 shrunk to 256x256
    assert "&lt;only two frames&gt;" in page and "No failures" in page
    assert '<div class="n">1</div><div>lights reused</div>' in page
    assert '<div class="n">1</div><div>masters reused</div>' in page


def test_without_matplotlib_the_page_is_skipped_with_a_warning(night, tmp_path, monkeypatch, caplog):
    output, _, _ = night
    copy = tmp_path / "copy"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("work.zarr", "report.html",
                                                                "report.cache.json"))
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the optional extra were not installed
    with caplog.at_level(logging.WARNING, logger="ccdflow.io.report_page"):
        assert write_report_page_or_warn(copy) is None
    assert "report.html skipped" in caplog.text and "ccdflow[plots]" in caplog.text
    assert not (copy / "report.html").exists()


def test_a_night_without_matplotlib_still_completes(tmp_path, monkeypatch, caplog):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.WARNING, logger="ccdflow.io.report_page"):
        output, report = _reduce(tmp_path, bad_frame=False)
    assert report.ok and (output / "report.json").exists()
    assert not (output / "report.html").exists()
    assert "report.html skipped" in caplog.text


def test_the_page_reads_again_only_the_products_that_changed(night, tmp_path):
    output, _, page = night
    copy = tmp_path / "copy"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("work.zarr"))  # times kept
    products = sorted(copy.glob("*/*.fits"))
    originals = {path: path.read_bytes() for path in products}
    for path in products:  # unreadable now, but with the size and time the cache knows
        status = path.stat()
        path.write_bytes(bytes(status.st_size))
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    body = lambda text: text[text.index("<main>"):]  # noqa: E731 (the title names the folder)
    assert body(write_report_page(copy).read_text()) == body(page)  # no product was read
    for path, content in originals.items():
        path.write_bytes(content)
    # a light written again (other pixels, same size): read again, its numbers follow it
    light = next(p for p in products if p.parent.name == "lights")
    with fits.open(light) as hdus:
        hdus[0].data = hdus[0].data + 1000.0
        hdus.writeto(light, overwrite=True)
    summaries = ProductSummaries(copy)
    median = summaries.get(light, max_side=64)["median"]
    assert summaries.read == 1
    with fits.open(light) as hdus:
        assert median == pytest.approx(float(np.nanmedian(hdus[0].data)))
    assert f"{median:.5g}" in _row(write_report_page(copy).read_text(), light.name)


def test_an_unreadable_cache_is_rebuilt(night, tmp_path):
    output, _, page = night
    copy = tmp_path / "copy"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("work.zarr"))
    (copy / CACHE_NAME).write_text("{not json")
    summaries = ProductSummaries(copy)
    light = next(copy.glob("lights/*.fits"))
    assert summaries.get(light, max_side=64)["picture"].startswith("data:image/png;base64,")
    assert summaries.read == 1
    write_report_page(copy)
    assert json.loads((copy / CACHE_NAME).read_text())["format"] == 2


def test_an_unchanged_page_leaves_its_cache_unwritten(night, tmp_path):
    output, _, _ = night
    copy = tmp_path / "copy"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("work.zarr"))
    write_report_page(copy)
    cache = copy / CACHE_NAME
    before = (cache.stat().st_ino, cache.stat().st_mtime_ns)
    write_report_page(copy)
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == before
    next(copy.glob("lights/*.fits")).unlink()  # a product gone: its entry leaves the cache
    write_report_page(copy)
    assert cache.stat().st_ino != before[0]
