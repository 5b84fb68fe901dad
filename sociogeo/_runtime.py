"""Runtime helpers shared by the model backends: device choice and transformers' loading bars."""

from __future__ import annotations

from contextlib import contextmanager

from ._optional import require
from .options import options


def resolve_device(device=None):
    """A ``torch.device``: the one given, else CUDA when available, else the CPU."""
    torch = require("torch", purpose="running the models")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@contextmanager
def loading_progress():
    """Transformers' own loading bars follow ``sociogeo.options.progress`` (``--quiet`` silences them)."""
    logging = require("transformers", purpose="loading models").utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    if not options.progress:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
