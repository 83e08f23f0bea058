"""The page's product summaries are made as tasks on the night's scheduler, not by the page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from distributed import Client, LocalCluster

from ccdflow import synthetic as syn
from ccdflow.io import report_cache
from ccdflow.io.report_page import page_products, render_report_page
from ccdflow.night import load_config, reduce_night, stage_page

CALIBRATION = {"overscans": "header", "image_area": "header", "gain": "header",
               "read_noise": "header"}


def _night(folder: Path) -> Path:
    syn.write_night(folder, instrument=syn.Instrument(ny=32, nx=40, n_overscan=4), filters=("V",),
                    n_bias=3, n_dark=3, dark_exptimes=(60.0,), n_flat=3, n_light=5, seed=8)
    path = folder / "night.yaml"
    path.write_text(yaml.safe_dump({"input": {"filelist": "night.csv"}, "output": "reduced",
                                    "calibration": CALIBRATION, "stack_lights": True}))
    return path


@pytest.fixture
def counted(monkeypatch):
    """Count the products summarized by the page itself and by the page stage's tasks."""
    counts = {"page": 0, "tasks": 0}
    real_product, real_stamped = report_cache.summarize_product, stage_page.summarize_stamped

    def product(path, *, max_side):
        counts["page"] += 1
        return real_product(path, max_side=max_side)

    def stamped(path, *, max_side):
        counts["tasks"] += 1
        counts["page"] -= 1  # summarize_stamped calls summarize_product: not the page's
        return real_stamped(path, max_side=max_side)

    monkeypatch.setattr(report_cache, "summarize_product", product)
    monkeypatch.setattr(stage_page, "summarize_stamped", stamped)
    return counts


@pytest.mark.parametrize("where", ["synchronous", "cluster"])
def test_the_page_reads_no_product_the_night_summarized(tmp_path, counted, where):
    config = load_config(_night(tmp_path))
    if where == "cluster":  # threads in this process: the counters see the tasks
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            report = reduce_night(config, scheduler=client, echo=lambda *_: None, progress=False)
    else:
        report = reduce_night(config, scheduler=where, echo=lambda *_: None, progress=False)
    assert report.ok, report.failures
    shown = page_products(config.output, report.to_dict())
    assert len(shown) == len(report.masters) + 5 + len(report.stacks)  # masters, lights, stack
    assert counted == {"page": 0, "tasks": len(shown)}
    assert "page" in report.seconds
    # the page made from those summaries is the page made by reading every product
    fresh = tmp_path / "fresh"
    shutil.copytree(config.output, fresh, ignore=shutil.ignore_patterns("work.zarr",
                                                                         report_cache.CACHE_NAME))
    page = (config.output / "report.html").read_text()
    body = lambda text: text[text.index("<main>"):]  # noqa: E731 (the title names the folder)
    assert body(render_report_page(fresh)) == body(page)


def test_a_rerun_summarizes_nothing_and_an_unsummarizable_product_is_left_to_the_page(
        tmp_path, counted, monkeypatch):
    config = load_config(_night(tmp_path))
    reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    counted.update(page=0, tasks=0)
    reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    assert counted == {"page": 0, "tasks": 0}
    # a task that cannot summarize (no plotting library on a worker): the page does it
    light = next((config.output / "lights").glob("*.fits"))
    light.touch()  # a new time: its summary is stale
    monkeypatch.setattr(stage_page, "summarize_stamped",
                        lambda path, *, max_side: (_ for _ in ()).throw(ImportError("no PIL")))
    report = reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    assert report.ok
    assert counted["page"] == 1
