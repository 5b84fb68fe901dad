"""Runtime helpers shared by the model backends: device choice and offline detection."""

from __future__ import annotations

import os
from contextlib import contextmanager

from ._optional import require
from .options import options


def resolve_device(device=None):
    """A ``torch.device``: the one given, else CUDA when available, else the CPU."""
    torch = require("torch", purpose="running the models")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def offline_requested() -> bool:
    """True when ``sociogeo.options.offline`` or Hugging Face's offline variables ask for no network."""
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(options.offline) or any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


@contextmanager
def loading_progress():
    """transformers' own loading bars follow ``sociogeo.options.progress`` (``--quiet`` silences them)."""
    logging = require("transformers", purpose="loading models").utils.logging
    was_enabled = logging.is_progress_bar_enabled()
    if not options.progress:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()
