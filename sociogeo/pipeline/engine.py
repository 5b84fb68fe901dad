"""Running chips: the work every engine shares, and the default engine (this process, streaming).

A :class:`Job` is what a run needs: the area's grid, the chip plan, the queries, where the
imagery comes from, the reasoner and the result store. An engine runs the job's pending chips
and writes each batch to the store as soon as it is done:

- :class:`LocalEngine` (the default): one process; imagery for the next batches is read in a
  background thread while the models work on the current one, so at most a few batches of chips
  are in memory, whatever the area.
- :class:`~sociogeo.pipeline.ray_engine.RayEngine`: Ray Data across GPUs and machines.

A batch that fails (a VLM server error, a tile that could not be had) is recorded and its chips
are retried one by one at the end; chips that still fail are reported, not fatal, and a rerun
with the same output runs them again.
"""

from __future__ import annotations

import queue
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._progress import progress
from ..geo.grid import PixelGrid
from .merge import chip_polygons, pixels_to_crs
from .plan import ChipTask
from .store import ChipStore, clean_text, pack_mask


@dataclass
class ChipOutcome:
    """What one engine run did: chip-query pairs stored, and those that failed (with why)."""

    done: int = 0
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (query, chip_id) -> error
    missing_tiles: dict[str, list] = field(default_factory=lambda: {"satellite": [], "map": []})
    first_error: BaseException | None = None  # the first exception a chip raised

    def raise_if_nothing_worked(self) -> None:
        """Raise the first chip's exception when every chip tried failed: then the cause is not
        one chip (a server that is down, models that cannot run) and a result would be empty.
        """
        if self.failed and self.done == 0 and self.first_error is not None:
            raise self.first_error


@dataclass
class Job:
    """Everything a run of chips needs (see the module docstring).

    ``imagery`` is an :class:`~sociogeo.imagery.source.ImagerySource` or an ImagePair;
    ``pending`` the (task, queries) still to run, in plan order.
    """

    grid: PixelGrid
    pending: list[tuple[ChipTask, list[str]]]
    imagery: object
    reasoner: object
    store: ChipStore
    batch_size: int
    generation: object = None
    callback: object = None

    @property
    def n_pending(self) -> int:
        """Chip-query pairs still to run."""
        return sum(len(queries) for _, queries in self.pending)


def reason(reasoner, items: list, grid: PixelGrid, *, generation=None) -> tuple[list[dict], list]:
    """Run ``items`` (``(task, query, images)`` with :class:`~sociogeo.imagery.windows.WindowImages`)
    through the reasoner in one batch; ``(records for the store, predictions)``.

    Chips without a single valid pixel are not reasoned about; they are stored as ``empty``.
    """
    runnable = [i for i, (_, _, images) in enumerate(items) if images.valid.any()]
    preds = {}
    if runnable:
        batch = [items[i] for i in runnable]
        answers = reasoner.predict_batch([im.map for _, _, im in batch], [im.satellite for _, _, im in batch],
                                         [q for _, q, _ in batch], generation=generation)
        preds = dict(zip(runnable, answers))
    records = [chip_record(task, query, images, preds.get(i), grid) for i, (task, query, images) in enumerate(items)]
    return records, [preds.get(i) for i in range(len(items))]


def chip_record(task: ChipTask, query: str, images, prediction, grid: PixelGrid) -> dict:
    """The store's row for one chip and query: its polygons, packed mask and texts."""
    inner = task.inner(grid)
    record = {"query": query, **task.as_dict(), "mask_height": inner.height, "mask_width": inner.width}
    if prediction is None:
        mask = np.zeros((inner.height, inner.width), dtype=bool)
        return {**record, "status": "empty", "mask": pack_mask(mask), "geometry": None, "stage1_text": "",
                "stage2_text": "", "reasoning": "", "discarded": "[]"}
    mask = (np.asarray(prediction.mask, bool) & images.valid)[: inner.height, : inner.width]
    polygons = chip_polygons(mask, inner.col_off, inner.row_off)
    return {
        **record,
        "status": "ok",
        "mask": pack_mask(mask),
        "geometry": None if polygons is None else pixels_to_crs(polygons, grid),
        "stage1_text": prediction.stage1_text,
        "stage2_text": prediction.stage2_text,
        "reasoning": prediction.reasoning,
        "discarded": _discarded_json(prediction),
    }


def _discarded_json(prediction) -> str:
    import json

    return json.dumps([{"stage": stage, "reason": d.reason, "raw": d.raw}
                       for stage, d in getattr(prediction, "discarded", [])], ensure_ascii=False)


class LocalEngine:
    """Chips in this process, streaming (the default engine).

    ``prefetch`` batches of imagery are read ahead in a background thread; ``retries`` is how many
    more times a failed chip is tried, one at a time, after all others.
    """

    name = "local"
    loads_models_itself = False

    def __init__(self, prefetch: int = 2, retries: int = 1):
        if prefetch < 0 or retries < 0:
            raise ValueError(f"prefetch and retries must be >= 0, got {prefetch} and {retries}")
        self.prefetch = int(prefetch)
        self.retries = int(retries)

    def run(self, job: Job) -> ChipOutcome:
        """Run ``job``'s pending chips; every finished batch is in ``job.store`` on return."""
        from ..imagery.windows import open_windows

        outcome = ChipOutcome()
        units = [(task, q) for task, queries in job.pending for q in queries]
        failed_units: list = []
        with open_windows(job.imagery, job.grid) as reader, \
                progress(total=len(units), desc="segmenting", unit="chip") as bar:
            for batch, error in _batches(reader, units, job, self.prefetch):
                if error is None:
                    error = self._run_batch(job, batch, outcome)
                if error is not None:
                    failed_units.extend((task, q) for task, q, _ in batch)
                    for task, q, _ in batch:
                        outcome.failed[(q, task.chip_id)] = error
                bar.update(len(batch))
                bar.set_postfix(failed=len(outcome.failed), refresh=False)
            for _ in range(self.retries):
                retry, failed_units = failed_units, []
                for task, q in retry:
                    images, error = _read(reader, task, job.grid, final=True)
                    if error is None:
                        error = self._run_batch(job, [(task, q, images)], outcome)
                    if error is None:
                        outcome.failed.pop((q, task.chip_id), None)
                    else:
                        outcome.failed[(q, task.chip_id)] = error
                        failed_units.append((task, q))
                bar.set_postfix(failed=len(outcome.failed), refresh=True)
            outcome.missing_tiles = _missing(reader)
        return outcome

    def _run_batch(self, job: Job, batch: list, outcome: ChipOutcome) -> str | None:
        """Reason about one batch and store it; the error's text if it failed."""
        try:
            records, preds = reason(job.reasoner, batch, job.grid, generation=job.generation)
        except Exception as exc:  # noqa: BLE001 (one failed batch must not end a city-wide run)
            if outcome.first_error is None:
                outcome.first_error = exc
            return clean_text(f"{type(exc).__name__}: {exc}")  # may quote model text
        job.store.append(records)
        outcome.done += len(records)
        if job.callback is not None:
            for (task, query, images), pred in zip(batch, preds):
                if pred is not None:
                    job.callback(_CallbackChip(task, images, job.grid), query, pred)
        return None


class _CallbackChip:
    """What ``segment(callback=...)`` receives as the chip: a :class:`~sociogeo.imagery.chips.Chip`."""

    def __new__(cls, task: ChipTask, images, grid: PixelGrid):
        from ..imagery.chips import Chip

        w = task.window
        pad = (max(0, w.row_off + w.height - grid.height), max(0, w.col_off + w.width - grid.width))
        return Chip(images.satellite, images.map, images.valid, task.grid(grid), w, task.row, task.col, pad)


def _read(reader, task: ChipTask, grid: PixelGrid, *, final: bool = False):
    """``(images, None)`` for the chip, or ``(None, error)`` when a tile failed for a reason that
    may pass (network, server); on the ``final`` try such tiles are nodata instead.
    """
    try:
        images = reader.read(task.grid(grid))
    except Exception as exc:  # noqa: BLE001 (recorded and retried like a failed model call)
        return None, clean_text(f"{type(exc).__name__}: {exc}")
    transient = [f for f in images.missing if f.kind != "missing"]
    if transient and not final:
        return None, f"tile {transient[0].tile}: {transient[0].reason}"
    return images, None


def _batches(reader, units: list, job: Job, prefetch: int):
    """``(batch, error)`` in plan order: batches of ``(task, query, images)``; a chip whose imagery
    failed comes as its own batch with the error. Imagery is read ``prefetch`` batches ahead in a
    background thread.
    """
    def produce(emit):
        cache: dict = {}  # one read per chip, shared by its queries
        pending = []
        for task, query in units:
            if task.chip_id not in cache:
                cache.clear()
                cache[task.chip_id] = _read(reader, task, job.grid)
            images, error = cache[task.chip_id]
            if error is not None:
                emit(([(task, query, None)], error))
                continue
            pending.append((task, query, images))
            if len(pending) >= job.batch_size:
                emit((pending, None))
                pending = []
        if pending:
            emit((pending, None))

    if prefetch == 0:
        out: list = []
        produce(out.append)
        yield from out
        return
    channel: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def worker():
        try:
            produce(lambda item: _put(channel, item, stop))
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
            _put(channel, exc, stop)
        finally:
            _put(channel, done, stop)

    thread = threading.Thread(target=worker, name="sociogeo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = channel.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _put(channel: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _missing(reader) -> dict:
    attrs = getattr(reader, "attrs", {}) or {}
    return attrs.get("missing_tiles", {"satellite": [], "map": []})


def warn_failed(outcome: ChipOutcome) -> None:
    """One warning naming the chips that still failed after their retries."""
    if not outcome.failed:
        return
    (query, chip_id), error = next(iter(outcome.failed.items()))
    warnings.warn(
        f"{len(outcome.failed)} chip(s) failed and are missing from the result (first: {chip_id} for "
        f"{query!r}: {error}); run again with the same output to retry them (finished chips are kept)",
        stacklevel=3,
    )


def warn_missing_tiles(missing: dict) -> None:
    """One :class:`~sociogeo.errors.MissingTilesWarning` for the tiles still missing after every
    chip ran (``attrs["missing_tiles"]``: layer -> list of tile dicts).
    """
    from ..errors import MissingTilesWarning

    counts = {layer: len(tiles) for layer, tiles in (missing or {}).items() if tiles}
    if not counts:
        return
    layer, tiles = next((k, v) for k, v in missing.items() if v)
    first = tiles[0]
    warnings.warn(
        f"{', '.join(f'{n} {k}' for k, n in counts.items())} tile(s) could not be had (first: "
        f"{first.get('z')}/{first.get('x')}/{first.get('y')} of {layer}: {first.get('reason')}); their pixels were "
        "nodata and not reasoned about (listed in the result's attrs['missing_tiles'] and its sidecar)",
        MissingTilesWarning, stacklevel=3,
    )


__all__ = ["ChipOutcome", "Job", "LocalEngine", "chip_record", "reason", "warn_failed", "warn_missing_tiles"]
