"""HTTP details the tile fetcher and the VLM client share: Retry-After, and what a connection
error was caused by (requests wraps urllib3 wraps socket errors, several levels deep).
"""

from __future__ import annotations

import email.utils
import time


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def caused_by(exc: BaseException | None, types: tuple = (), names: tuple[str, ...] = ()) -> bool:
    """Whether ``exc`` or anything in its chain of causes (``__cause__``, ``__context__``,
    urllib3's ``reason``, an exception as first argument) is one of ``types``, or of a class named
    in ``names`` (for classes not worth importing to check).
    """
    seen, todo = set(), [exc]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, types) or type(exc).__name__ in names:
            return True
        first = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        todo += [exc.__cause__, exc.__context__, getattr(exc, "reason", None), first]
    return False
