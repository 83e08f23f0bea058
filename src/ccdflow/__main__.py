"""``python -m ccdflow``: the same command as ``ccdflow``."""

from ccdflow.cli import main

if __name__ == "__main__":
    main(prog_name="ccdflow")
