"""The Ray engine: an area's chips across many GPUs and machines, on Ray Data.

The driver plans the chips and keeps the result store; Ray Data streams the chips through two
stages, each a pool of actors that lives for the whole run:

1. readers (CPU): each opens the imagery once (tile cache, OSM renderer) and reads one chip window
   per row;
2. reasoners (GPU): each loads the models once (from a :class:`~sociogeo.reasoner.model.ReasonerSpec`,
   so weights are never shipped) and runs batches of chips through both stages; a VLM can also be
   a fleet of OpenAI-compatible servers (vLLM), spread over the actors.

Each finished batch comes back to the driver, which writes it to the store exactly as the local
engine does, so the two engines resume each other's runs. A killed actor is restarted and its
batch retried by Ray (no chip is lost); the driver writes a (query, chip) once even if Ray hands
it back twice. Chips that raise are recorded and retried once at the end, like locally.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .._optional import require
from .._progress import progress
from ..errors import ConfigError
from .engine import ChipOutcome, Job, reason
from .plan import ChipTask
from .store import clean_text

_PURPOSE = "the Ray engine (pip install 'sociogeo[ray]')"
_RECORD_COLUMNS = ("query", "chip_id", "row", "col", "col_off", "row_off", "width", "height", "status",
                   "stage1_text", "stage2_text", "reasoning", "discarded", "mask", "mask_height", "mask_width",
                   "geometry", "error")


@dataclass
class RayEngine:
    """Run chips on a Ray cluster with Ray Data.

    Parameters
    ----------
    address : str, optional
        The cluster to join (``"auto"``, ``"ray://head:10001"``); None joins the cluster
        ``RAY_ADDRESS`` names, else starts a local one on this machine.
    num_actors : int
        Model actors (one copy of the models each).
    gpus_per_actor : float, optional
        GPUs each model actor holds; None gives 1 when the cluster has GPUs, else 0.
    cpus_per_actor : float
        CPUs each model actor holds.
    readers : int
        Imagery reader actors (CPU), each with its own tile session and cache.
    batch_size : int, optional
        Chips (times queries) per model call; None uses the run's ``batch_size``.
    vlm_urls : sequence of str
        OpenAI-compatible server URLs (e.g. a vLLM fleet); every model actor spreads its requests
        over all of them, so the fleet is balanced whatever the number of actors. Empty loads the
        VLM in each actor.
    init_kwargs : dict
        More arguments for ``ray.init`` when this engine starts or joins the cluster.
    """

    address: str | None = None
    num_actors: int = 1
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    readers: int = 1
    batch_size: int | None = None
    vlm_urls: Sequence[str] = ()
    retries: int = 1
    init_kwargs: dict = field(default_factory=dict)

    name = "ray"
    loads_models_itself = True

    def __post_init__(self):
        for key in ("num_actors", "readers"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"RayEngine {key} must be at least 1, got {getattr(self, key)!r}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ConfigError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size!r}")
        self.vlm_urls = tuple(str(u) for u in self.vlm_urls)
        bad = [u for u in self.vlm_urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"vlm_urls must be http(s):// server URLs, got {bad}")

    # -- running --------------------------------------------------------------------------------
    def run(self, job: Job) -> ChipOutcome:
        """Run ``job``'s pending chips on the cluster; every finished batch is in ``job.store``."""
        outcome = ChipOutcome()
        units = [(task, queries) for task, queries in job.pending]
        if not units:
            return outcome
        ray = self._connect()
        sink = _Sink(job.store, outcome, progress(total=sum(len(q) for _, q in units), desc="segmenting (ray)",
                                                  unit="chip"))
        with sink.bar:
            size = job.batch_size if self.batch_size is None else self.batch_size
            self._pass(ray, job, units, size, sink, final=False)
            for _ in range(self.retries):
                failed: dict[str, list[str]] = {}
                for (query, chip_id) in outcome.failed:
                    failed.setdefault(chip_id, []).append(query)
                if not failed:
                    break
                outcome.failed.clear()
                sink.counted = False  # retried chips were counted when they failed
                self._pass(ray, job, [(task, failed[task.chip_id]) for task, _ in units if task.chip_id in failed],
                           1, sink, final=True)
        return outcome

    def predict_batches(self, reasoner, samples, batches: list[list[int]], generation):
        """``(indices, predictions)`` for each batch of sample indices, in the order given, each batch
        run as one ``predict_batch`` call on a model actor (so decoding, sampled included, is the
        local run's). ``samples`` is a sequence readable by index in every actor.
        """
        ray = self._connect()
        dataset = ray.data.from_items([{"batch": i} for i in range(len(batches))],
                                      override_num_blocks=max(1, min(len(batches), 32 * self.num_actors)))
        results = dataset.map_batches(
            _PredictSamples,
            fn_constructor_kwargs={"reasoner": reasoner, "samples": samples, "batches": batches,
                                   "generation": generation, "vlm_urls": self.vlm_urls},
            batch_size=1, concurrency=self.num_actors, num_gpus=self._gpus(ray), num_cpus=self.cpus_per_actor,
        )
        done: dict[int, list] = {}
        following = 0
        for row in results.iter_rows():
            done[int(row["batch"])] = pickle.loads(row["predictions"])
            while following in done:  # hand batches back in order
                yield batches[following], done.pop(following)
                following += 1

    def _connect(self):
        ray = require("ray", purpose=_PURPOSE)
        require("ray.data", purpose=_PURPOSE)
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            ray.init(address=address, **kwargs)
        ray.data.DataContext.get_current().enable_progress_bars = False
        return ray

    def _gpus(self, ray) -> float:
        if self.gpus_per_actor is not None:
            return float(self.gpus_per_actor)
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def _pass(self, ray, job: Job, units, batch_size: int, sink: _Sink, *, final: bool) -> None:
        """One Ray Data run over ``units``, results stored as they arrive. ``final``: tiles that
        still fail are nodata instead of failing their chip (the last try).
        """
        rows = [{**task.as_dict(), "queries": json.dumps(queries)} for task, queries in units]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 32 * self.readers)))
        # Ray Data restarts a dead actor and retries its batch without limit by default
        # (max_restarts=-1, max_task_retries=-1); tests/pipeline/test_ray_engine.py kills one to check
        images = dataset.map_batches(
            _ReadWindows, fn_constructor_kwargs={"imagery": job.imagery, "grid": job.grid, "final": final},
            batch_size=1, concurrency=self.readers, num_cpus=1,
        )
        results = images.map_batches(
            _ReasonChips,
            fn_constructor_kwargs={"reasoner": job.reasoner, "grid": job.grid, "generation": job.generation,
                                   "vlm_urls": self.vlm_urls},
            batch_size=max(1, batch_size), concurrency=self.num_actors, num_gpus=self._gpus(ray),
            num_cpus=self.cpus_per_actor,
        )
        for batch in results.iter_batches(batch_size=None, batch_format="pandas"):
            sink.take(batch.to_dict("records"))


@dataclass
class _Sink:
    """The driver's end: writes each (query, chip) once, counts failures, moves the bar."""

    store: object
    outcome: ChipOutcome
    bar: object
    written: set = field(default_factory=set)
    counted: bool = True

    def take(self, rows: list[dict]) -> None:
        records, failed = [], []
        for record in rows:
            key = (record["query"], record["chip_id"])
            if record["status"] == "failed":
                failed.append((key, record["error"]))
            elif key not in self.written:  # a retried task may hand a chip back twice: store it once
                self.written.add(key)
                records.append(_to_store(record))
        if records:
            self.store.append(records)
            self.outcome.done += len(records)
        for key, error in failed:
            self.outcome.failed[key] = error
        if self.counted:
            self.bar.update(len(records) + len(failed))
        self.bar.set_postfix(failed=len(self.outcome.failed), refresh=False)


class _ReadWindows:
    """Ray actor: reads chip windows (imagery opened once per actor)."""

    def __init__(self, imagery, grid, final: bool):
        from ..imagery.windows import open_windows

        self.grid = grid
        self.final = final
        self.reader = open_windows(imagery, grid)

    def __call__(self, batch: dict) -> dict:
        from .engine import _read

        out: dict[str, list] = {k: [] for k in (*_task_keys(), "queries", "satellite", "map", "valid", "error")}
        for i in range(len(batch["chip_id"])):
            task = ChipTask.from_dict({k: batch[k][i] for k in _task_keys()})
            images, error = _read(self.reader, task, self.grid, final=self.final)
            for k in _task_keys():
                out[k].append(batch[k][i])
            out["queries"].append(batch["queries"][i])
            size = (task.window.height, task.window.width)
            out["satellite"].append(images.satellite if images is not None else np.zeros((*size, 3), np.uint8))
            out["map"].append(images.map if images is not None else np.zeros((*size, 3), np.uint8))
            out["valid"].append(images.valid if images is not None else np.zeros(size, bool))
            out["error"].append(error or "")
        return {k: np.array(v) if k in ("satellite", "map", "valid") else np.array(v, dtype=object)
                for k, v in out.items()}


class _ReasonChips:
    """Ray actor: holds the models, reasons about batches of chips, returns store records."""

    def __init__(self, reasoner, grid, generation, vlm_urls=()):
        self.grid = grid
        self.generation = generation
        if hasattr(reasoner, "load") and not hasattr(reasoner, "predict_batch"):  # a ReasonerSpec
            # a fleet of servers: every actor spreads its requests over all of them
            reasoner = reasoner.load(vlm=list(vlm_urls)) if vlm_urls else reasoner.load()
        elif vlm_urls:
            raise ConfigError("vlm_urls needs models given by name (segment(vlm=..., sam=...)), not a ready reasoner")
        self.reasoner = reasoner

    def __call__(self, batch: dict) -> dict:
        from ..imagery.windows import WindowImages

        items, failed = [], []
        for i in range(len(batch["chip_id"])):
            task = ChipTask.from_dict({k: batch[k][i] for k in _task_keys()})
            queries = json.loads(batch["queries"][i])
            if batch["error"][i]:
                failed.extend((task, q, batch["error"][i]) for q in queries)
                continue
            images = WindowImages(batch["satellite"][i], batch["map"][i], batch["valid"][i])
            items.extend((task, q, images) for q in queries)
        records = []
        if items:
            try:
                records, _ = reason(self.reasoner, items, self.grid, generation=self.generation)
            except Exception as exc:  # noqa: BLE001 (recorded, retried at the end, not fatal)
                failed.extend((task, q, clean_text(f"{type(exc).__name__}: {exc}")) for task, q, _ in items)
        for task, query, error in failed:
            records.append({"query": query, **task.as_dict(), "status": "failed", "error": error})
        return _columns(records)


class _PredictSamples(_ReasonChips):
    """Ray actor: runs batches of dataset samples (by index) through the reasoner."""

    def __init__(self, reasoner, samples, batches, generation, vlm_urls=()):
        super().__init__(reasoner, None, generation, vlm_urls)
        self.samples, self.batches = samples, batches

    def __call__(self, batch: dict) -> dict:
        out = {"batch": [], "predictions": []}
        for i in batch["batch"]:
            chosen = [self.samples[j] for j in self.batches[int(i)]]
            preds = self.reasoner.predict_batch([s.map_image for s in chosen], [s.satellite_image for s in chosen],
                                                [s.query for s in chosen], generation=self.generation)
            for p in preds:
                p.stage1_mask = None  # not scored; keeps what travels back small
            out["batch"].append(int(i))
            out["predictions"].append(pickle.dumps(preds))
        return {"batch": np.array(out["batch"]), "predictions": np.array(out["predictions"], dtype=object)}


def _task_keys() -> tuple[str, ...]:
    return ("chip_id", "row", "col", "col_off", "row_off", "width", "height")


def _columns(records: list[dict]) -> dict:
    """Store records as Ray Data columns (geometries as WKB, masks as bytes)."""
    import shapely

    out = {k: [] for k in _RECORD_COLUMNS}
    for r in records:
        for k in _RECORD_COLUMNS:
            value = r.get(k)
            if k == "geometry":
                value = None if value is None else shapely.to_wkb(value)
            out[k].append(value)
    return {k: np.array(v, dtype=object) for k, v in out.items()}


def _to_store(record: dict) -> dict:
    import shapely

    geometry = record.get("geometry")
    return {**{k: v for k, v in record.items() if k != "error"},
            "geometry": None if geometry is None else shapely.from_wkb(geometry)}


__all__ = ["RayEngine"]
