"""One progress display for every stage of a night (masters, lights, stacks).

On a terminal it is a click progress bar on standard error; anywhere else (a log file, a batch
job) it is one line per stage when the stage ends, so logs are not flooded with bar redraws.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator

import click

__all__ = ["stage_progress"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def stage_progress(label: str, total: int, *, show: bool = True,
                   stream=None) -> Iterator[Callable[[int], None]]:
    """Show the progress of one stage; yields ``advance(n)``, called as items finish.

    Parameters
    ----------
    label : str
        The stage (``masters``, ``lights``, ``stacks``).
    total : int
        Items in the stage.
    show : bool
        ``False`` shows nothing at all (``-q``, or a caller that reports by itself).
    stream : file, optional
        Where to show it; standard error by default. A bar only if it is a terminal.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with stage_progress("lights", 3, stream=out) as advance:
    ...     advance(2); advance(1)
    >>> out.getvalue().startswith("lights: 3/3 done in ")
    True
    """
    stream = sys.stderr if stream is None else stream
    start, done = time.perf_counter(), 0
    if show and total and stream.isatty():
        with click.progressbar(length=total, label=label, show_pos=True, file=stream) as bar:
            yield bar.update
        return

    def advance(n: int = 1) -> None:
        nonlocal done
        done += n

    yield advance
    if show and total:
        line = f"{label}: {done}/{total} done in {time.perf_counter() - start:.1f} s"
        print(line, file=stream)
        logger.info(line)
