"""One place for progress bars, so ``sociogeo.set_progress(False)`` silences all of them."""

from __future__ import annotations

from .options import options


def progress(iterable=None, *, total=None, desc=None, unit="it", disable=None, **kwargs):
    """A ``tqdm.auto`` bar (notebook widget in Jupyter, text elsewhere) obeying ``options.progress``."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not options.progress
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False, **kwargs)
