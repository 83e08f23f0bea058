"""Reading and writing files: FITS frames in, calibrated products out, always atomically."""

from ccdflow.io.fits import Frame, open_frame, open_stack

__all__ = ["Frame", "open_frame", "open_stack"]
