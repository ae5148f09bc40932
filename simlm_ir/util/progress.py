"""Progress bars that stay readable in logs: frequent on a terminal, every few seconds otherwise."""

import sys

from tqdm import tqdm


def progress(iterable=None, **kwargs):
    kwargs.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 5.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
