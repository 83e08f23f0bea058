"""Pure-numpy (and numba) kernels: blocks in, blocks out; no dask, no files, no headers."""
