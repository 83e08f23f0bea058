"""The ``ccdflow`` command: init, plan, run, report, validate, synth and demo."""

from __future__ import annotations

import logging
import os
import sys
from enum import IntEnum
from pathlib import Path

import click
import yaml

from ccdflow._version import __version__
from ccdflow.errors import CcdflowError, NightAbortedError

__all__ = ["ExitStatus", "main"]


class ExitStatus(IntEnum):
    """What a night's exit status says happened.

    Examples
    --------
    >>> int(ExitStatus.frames_failed), ExitStatus(130).name
    (1, 'interrupted')
    """

    ok = 0
    """Every frame and product done (or reused from an earlier run)."""
    frames_failed = 1
    """Some frames or masters failed (named in the report); the rest is done."""
    config_error = 2
    """Configuration or input error found before any work (including an unreachable cluster,
    or a product that would overwrite an input); nothing was computed."""
    aborted = 3
    """The environment stopped the run (disk full, unwritable output, lost cluster); the report
    says why and a rerun resumes."""
    interrupted = 130
    """Ctrl-C; a rerun resumes."""

    @property
    def meaning(self) -> str:
        """One line saying what the status means (``ccdflow run --help``, README)."""
        return _MEANING[self]


_MEANING = {
    ExitStatus.ok: "all done",
    ExitStatus.frames_failed: "some frames or masters failed, the rest done",
    ExitStatus.config_error: "configuration or input error, found before any work",
    ExitStatus.aborted: "aborted by the environment (disk full, unwritable output, lost cluster)",
    ExitStatus.interrupted: "interrupted (Ctrl-C); a rerun resumes",
}


def _fail(err: CcdflowError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(ExitStatus.config_error)


_QUIET = "ccdflow.quiet"


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    # distributed sets its own loggers to INFO when imported: import it now, then quieten them,
    # so that the terminal shows our progress and summary
    import distributed  # noqa: F401

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(level)
    # the dashboard's host-wildcard notice is not actionable for a local cluster
    logging.getLogger("bokeh").setLevel(level if verbose else logging.ERROR)
    click.get_current_context().meta[_QUIET] = quiet and not verbose


def _verbosity(command):
    """Accept ``-v``/``-q`` after the subcommand too (``ccdflow run -v CONFIG``)."""

    def set_verbose(ctx: click.Context, _param, value: bool) -> None:
        if value:
            _configure_logging(True, False)

    def set_quiet(ctx: click.Context, _param, value: bool) -> None:
        if value:
            _configure_logging(False, True)

    command = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=set_quiet,
                           help="Print errors only.")(command)
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=set_verbose,
                        help="Log progress details.")(command)


def _quiet() -> bool:
    return bool(click.get_current_context().meta.get(_QUIET))


@click.group()
@click.version_option(__version__, prog_name="ccdflow")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
def main(verbose: bool, quiet: bool) -> None:
    """Calibrate whole nights of CCD frames in parallel on Dask."""
    _configure_logging(verbose, quiet)


def _silent(*_args, **_kwargs) -> None:
    """Drop progress lines (``--quiet``)."""


def _run(config_path: Path, scheduler: str | None, workers: int | None, *,
         performance_report: Path | None = None) -> None:
    from ccdflow.night import load_config, reduce_night
    from ccdflow.night.config import check_scheduler

    try:
        check_scheduler(scheduler, key="--scheduler")  # a typo is an error here, not a traceback
        config = load_config(config_path)
        report = reduce_night(config, scheduler=scheduler, n_workers=workers,
                              performance_report=performance_report,
                              echo=_silent if _quiet() else click.echo, progress=not _quiet())
    except NightAbortedError as err:
        click.echo(f"aborted: {err} (the report says so; a rerun resumes)", err=True)
        sys.exit(ExitStatus.aborted)
    except CcdflowError as err:
        _fail(err)
    except KeyboardInterrupt:
        click.echo("interrupted: finished work is kept; run the same command again to resume", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # leave now: the report says "interrupted" and every product is written atomically, while a
        # normal interpreter shutdown would let the store's I/O threads print the errors of the
        # writes the interrupt cut short after this line (the next run redoes that work)
        os._exit(ExitStatus.interrupted)
    if not _quiet():
        click.echo(report.summary())
        page = config.output / "report.html"
        click.echo(f"outputs in {config.output}  (report: {config.output / 'report.json'}"
                   + (f", {page}" if page.exists() else "") + ")")
        if performance_report is not None:
            click.echo(f"dask performance report: {performance_report}")
    if not report.ok:
        click.echo(f"{len(report.failures)} failure(s):", err=True)
        for path, reason in report.failures.items():
            click.echo(f"  {path}: {reason}", err=True)
        sys.exit(ExitStatus.frames_failed)


_EXIT_HELP = "\b\nExit status:\n" + "\n".join(f"  {int(s):>3}  {s.meaning}" for s in ExitStatus)


@main.command(epilog=_EXIT_HELP)
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheduler", help="tcp:// or tls://host:port of a dask scheduler, gateway://host "
              "of a dask-gateway server, or threads/synchronous.")
@click.option("--workers", type=click.IntRange(min=1), help="LocalCluster workers.")
@click.option("--performance-report", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write dask's performance report (HTML) of the night to FILE; "
              "needs a dask cluster (an error with threads/synchronous/processes).")
@click.option("--dry-run", is_flag=True, help="Print what each light will use; compute nothing.")
@_verbosity
def run(config: Path, scheduler: str | None, workers: int | None, performance_report: Path | None,
        dry_run: bool) -> None:
    """Reduce the night described by CONFIG (YAML)."""
    if dry_run:
        _plan(config)
    else:
        _run(config, scheduler, workers, performance_report=performance_report)


def _plan(config_path: Path) -> None:
    from ccdflow.night import load_config
    from ccdflow.night.plan_text import plan_lines
    from ccdflow.night.run import plan_night

    try:
        plan = plan_night(load_config(config_path))
    except CcdflowError as err:
        _fail(err)
    for line in plan_lines(plan):
        click.echo(line)
    for path, reason in plan.failures.items():
        click.echo(f"invalid: {path}: {reason}", err=True)
    if plan.failures:
        sys.exit(1)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_verbosity
def plan(config: Path) -> None:
    """Print the masters each light of CONFIG will use, with the dark scale; compute nothing."""
    _plan(config)


@main.command()
@click.argument("output", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_verbosity
def report(output: Path) -> None:
    """Rebuild OUTPUT/report.html from OUTPUT/report.json and the FITS products."""
    from ccdflow.io.report_page import write_report_page

    try:
        path = write_report_page(output)
    except CcdflowError as err:
        _fail(err)
    except ImportError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    if not _quiet():
        click.echo(f"wrote {path}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing night.yaml.")
@_verbosity
def init(directory: Path, force: bool) -> None:
    """Write DIRECTORY/night.yaml: a commented template of every key with its default."""
    from importlib.resources import files

    from ccdflow.errors import OutputExistsError
    from ccdflow.io.write import atomic_path

    path = directory / "night.yaml"
    try:
        with atomic_path(path, overwrite=force) as tmp:
            tmp.write_text((files("ccdflow") / "configs" / "example.yaml").read_text())
    except OutputExistsError as err:
        _fail(OutputExistsError(f"{err} (use --force to replace it)"))
    if not _quiet():
        click.echo(f"wrote {path}; edit its input section, then: ccdflow validate {path}")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@_verbosity
def validate(config: Path) -> None:
    """Check CONFIG and its inputs (headers only, no pixels computed)."""
    from ccdflow.night import load_config
    from ccdflow.night.run import plan_night

    try:
        plan = plan_night(load_config(config))
    except CcdflowError as err:
        _fail(err)
    click.echo(f"masters: {', '.join(f'{m.name} ({len(m.frames)})' for m in plan.masters) or 'none'}")
    click.echo(f"frames to calibrate: {len(plan.frames)}")
    for message in plan.warnings:
        click.echo(f"warning: {message}")
    for path, reason in plan.failures.items():
        click.echo(f"invalid: {path}: {reason}", err=True)
    if plan.failures:
        sys.exit(1)
    click.echo("config is valid")


def write_synthetic_night(directory: Path, *, size: int, n_light: int, seed: int,
                          amplifiers: int = 1, layout: str | None = None) -> Path:
    """Write a synthetic night and its ``night.yaml``; return the YAML's path.

    One amplifier: sections and detector numbers from the header cards the config names. Two or
    four: the layout, sections, gains and read noise come from the headers with no key at all
    (the truth goes to ``truth.json`` and ``truth.npz``).
    """
    from ccdflow import synthetic

    if amplifiers not in (1, 2, 4):
        raise click.BadParameter(f"must be 1, 2 or 4, not {amplifiers}", param_hint="--amplifiers")
    if amplifiers == 1:
        if layout is not None:
            raise click.BadParameter("applies to 2 or 4 amplifiers only", param_hint="--layout")
        instrument = synthetic.Instrument(ny=size, nx=size, n_overscan=max(8, size // 16))
        night = synthetic.write_night(directory, instrument=instrument, n_light=n_light, seed=seed)
        calibration = {"overscans": "header", "overscan_method": "median_per_line",
                       "image_area": "header", "gain": "header", "read_noise": "header"}
    else:
        rows, cols = (1, 2) if amplifiers == 2 else (2, 2)
        if size < 2 * max(rows, cols):
            raise click.BadParameter(f"must be at least {2 * max(rows, cols)}", param_hint="--size")
        night = synthetic.write_amplifier_night(
            directory, layout=layout or "extensions", n_amplifiers=amplifiers, n_light=n_light,
            seed=seed, amp_shape=(size // rows, size // cols), n_overscan=max(8, size // 16))
        calibration = {}  # everything per amplifier from the headers
    config = {"input": {"filelist": night.filelist.name}, "output": "reduced",
              **({"calibration": calibration} if calibration else {}), "stack_lights": True}
    path = Path(directory) / "night.yaml"
    path.write_text("# a synthetic night written by `ccdflow synth`\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


_AMPLIFIER_OPTIONS = (
    click.option("--amplifiers", default=1, show_default=True,
                 help="Amplifiers of the CCD: 1, 2 (side by side) or 4 (2 x 2)."),
    click.option("--layout", type=click.Choice(["extensions", "lettered"]),
                 help="With 2 or 4 amplifiers: one extension per amplifier (default) or one "
                      "image with lettered keys (DATASECA, ...)."),
)


def _amplifier_options(command):
    for option in reversed(_AMPLIFIER_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=256, show_default=True, help="Image rows and columns.")
@click.option("--lights", default=4, show_default=True, help="Lights per filter.")
@click.option("--seed", default=0, show_default=True)
@_amplifier_options
@_verbosity
def synth(directory: Path, size: int, lights: int, seed: int, amplifiers: int,
          layout: str | None) -> None:
    """Write a synthetic night (raw frames, night.csv, night.yaml) into DIRECTORY.

    With --amplifiers 2 or 4 the night is of a multi-amplifier CCD, with its truth in truth.json
    and truth.npz.
    """
    path = write_synthetic_night(directory, size=size, n_light=lights, seed=seed,
                                 amplifiers=amplifiers, layout=layout)
    if not _quiet():
        what = "synthetic night" if amplifiers == 1 else f"synthetic {amplifiers}-amplifier night"
        click.echo(f"{what} written; reduce it with: ccdflow run {path}")


@main.command()
@click.option("--directory", default="ccdflow-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=256, show_default=True, help="Image rows and columns.")
@click.option("--scheduler", help="tcp://host:port of a dask scheduler, or threads/synchronous.")
@click.option("--workers", type=click.IntRange(min=1), help="LocalCluster workers.")
@_amplifier_options
@_verbosity
def demo(directory: Path, size: int, scheduler: str | None, workers: int | None, amplifiers: int,
         layout: str | None) -> None:
    """Synthesize a small night and reduce it end to end (--amplifiers 4: a 4-amplifier CCD)."""
    path = write_synthetic_night(directory, size=size, n_light=4, seed=0, amplifiers=amplifiers,
                                 layout=layout)
    if not _quiet():
        click.echo(f"synthetic night in {directory}")
    _run(path, scheduler, workers)


if __name__ == "__main__":
    main()
