"""The ``ccdflow`` command: run, validate, synth and demo."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import yaml

from ccdflow._version import __version__
from ccdflow.errors import CcdflowError

__all__ = ["main"]


def _fail(err: CcdflowError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="ccdflow")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Calibrate whole nights of CCD frames in parallel on Dask."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # distributed sets its own loggers to INFO when imported: import it now, then quieten them,
    # so that the terminal shows our progress and summary
    import distributed  # noqa: F401

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(level)
    # the dashboard's host-wildcard notice is not actionable for a local cluster
    logging.getLogger("bokeh").setLevel(level if verbose else logging.ERROR)


def _run(config_path: Path, scheduler: str | None, workers: int | None) -> None:
    from ccdflow.night import load_config, reduce_night
    from ccdflow.night.config import check_scheduler

    try:
        check_scheduler(scheduler, key="--scheduler")  # a typo is an error here, not a traceback
        config = load_config(config_path)
        report = reduce_night(config, scheduler=scheduler, n_workers=workers, echo=click.echo)
    except CcdflowError as err:
        _fail(err)
    click.echo(report.summary())
    click.echo(f"outputs in {config.output}  (report: {config.output / 'report.json'})")
    if not report.ok:
        click.echo(f"{len(report.failures)} failure(s):", err=True)
        for path, reason in report.failures.items():
            click.echo(f"  {path}: {reason}", err=True)
        sys.exit(1)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scheduler", help="tcp://host:port of a dask scheduler, or threads/synchronous.")
@click.option("--workers", type=click.IntRange(min=1), help="LocalCluster workers.")
def run(config: Path, scheduler: str | None, workers: int | None) -> None:
    """Reduce the night described by CONFIG (YAML)."""
    _run(config, scheduler, workers)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
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


def write_synthetic_night(directory: Path, *, size: int, n_light: int, seed: int) -> Path:
    """Write a synthetic night and its ``night.yaml``; return the YAML's path."""
    from ccdflow import synthetic

    instrument = synthetic.Instrument(ny=size, nx=size, n_overscan=max(8, size // 16))
    night = synthetic.write_night(directory, instrument=instrument, n_light=n_light, seed=seed)
    config = {
        "input": {"filelist": night.filelist.name},
        "output": "reduced",
        "calibration": {"overscans": "header", "overscan_method": "median_per_line",
                        "image_area": "header", "gain": "header", "read_noise": "header"},
        "stack_lights": True,
    }
    path = Path(directory) / "night.yaml"
    path.write_text("# a synthetic night written by `ccdflow synth`\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=256, show_default=True, help="Image rows and columns.")
@click.option("--lights", default=4, show_default=True, help="Lights per filter.")
@click.option("--seed", default=0, show_default=True)
def synth(directory: Path, size: int, lights: int, seed: int) -> None:
    """Write a synthetic night (raw frames, night.csv, night.yaml) into DIRECTORY."""
    path = write_synthetic_night(directory, size=size, n_light=lights, seed=seed)
    click.echo(f"synthetic night written; reduce it with: ccdflow run {path}")


@main.command()
@click.option("--directory", default="ccdflow-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default=256, show_default=True, help="Image rows and columns.")
@click.option("--scheduler", help="tcp://host:port of a dask scheduler, or threads/synchronous.")
@click.option("--workers", type=click.IntRange(min=1), help="LocalCluster workers.")
def demo(directory: Path, size: int, scheduler: str | None, workers: int | None) -> None:
    """Synthesize a small night and reduce it end to end."""
    path = write_synthetic_night(directory, size=size, n_light=4, seed=0)
    click.echo(f"synthetic night in {directory}")
    _run(path, scheduler, workers)


if __name__ == "__main__":
    main()
