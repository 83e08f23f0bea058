"""The report page's summaries of the night's products, made in parallel where the lights ran.

`report.html` shows each product's picture and statistics (median, robust spread, error, flagged
fraction), read back from the product. Made by the client one after another, that reading took
longer than the lights themselves (about 28 ms per 512^2 light against 18 ms per light on two
workers). Here the products the page will show and its cache lacks are summarized as tasks on
the night's scheduler; the page then finds them all in its cache and reads no product.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dask
from distributed import Client

from ccdflow.io.report_cache import ProductSummaries, summarize_stamped
from ccdflow.io.report_page import page_products
from ccdflow.night.report import NightReport

__all__ = ["summarize_for_page"]

logger = logging.getLogger(__name__)


def summarize_for_page(output: Path, report: NightReport,
                       client: Client | None) -> ProductSummaries:
    """Summarize on ``client`` (or the local scheduler) what the page shows and its cache lacks.

    Only a speed-up: a product that cannot be summarized here (no plotting library on a worker,
    a product gone) is left to the page, which reads it and says what is wrong.

    Parameters
    ----------
    output : Path
        The night's output folder.
    report : NightReport
        The night's report, naming its products.
    client : distributed.Client or None
        The night's cluster; None runs the tasks on the local dask scheduler.

    Returns
    -------
    ProductSummaries
        The page's cache holding the new summaries, for `write_report_page` (which saves it).
    """
    summaries = ProductSummaries(output)
    todo = [(path, side) for path, side in page_products(output, report.to_dict())
            if summaries.stale(path, max_side=side)]
    if not todo:
        return summaries
    paths, sides = [p for p, _ in todo], [s for _, s in todo]
    if client is None:
        results = dask.compute(*(dask.delayed(_summary, pure=False)(p, s) for p, s in todo))
    else:
        results = client.gather(client.map(_summary, paths, sides, pure=False))
    for (path, side), result in zip(todo, results, strict=True):
        if result is not None:
            stamp, summary = result
            summaries.put(path, max_side=side, stamp=stamp, summary=summary)
    return summaries


def _summary(path: Path, side: int) -> tuple[list, dict[str, Any]] | None:
    try:
        return summarize_stamped(path, max_side=side)
    except (ImportError, OSError) as err:  # the page reads it itself, and says what is wrong
        logger.info("%s: not summarized for the page here (%s)", path, err)
        return None
