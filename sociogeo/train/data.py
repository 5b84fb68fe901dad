"""Training samples in the model's pixel space, and which ones each step uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..geo import modelspace
from ..reasoner.protocol import ModelImages


@dataclass
class ModelSample:
    """A sample as the policy sees it: images and mask in model space (e.g. 756 x 756).

    ``image_size`` is the (height, width) the images had before the model's resize (768 x 768
    for SocioSeg); ``truth_boxes`` are the mask's ground-truth boxes in model space.
    """

    id: str
    query: str
    map_image: np.ndarray
    satellite_image: np.ndarray
    mask: np.ndarray
    truth_boxes: list
    image_size: tuple[int, int] = (768, 768)

    @property
    def images(self) -> ModelImages:
        """The two images as the two-stage protocol takes them."""
        return ModelImages(self.map_image, self.satellite_image, tuple(self.mask.shape[:2]), tuple(self.image_size))


def load_training_data(data_cfg):
    """The SocioSeg-style dataset named by a :class:`~sociogeo.train.config.DataSettings`.

    With ``queries`` set, only the samples of those queries are kept (a list; every sample is
    read once to check its query).
    """
    from ..datasets.socioseg import load_socioseg

    ds = load_socioseg(data_cfg.source, data_cfg.split, limit=data_cfg.limit)
    queries = getattr(data_cfg, "queries", None)
    if queries:
        ds = [s for s in ds if s.query in set(queries)]
    if len(ds) == 0:
        which = f" for queries {list(queries)}" if queries else ""
        raise ConfigError(f"no training samples in {data_cfg.source!r} ({data_cfg.split}){which}")
    return ds


def to_model_space(sample, image_size: int | None = None) -> ModelSample:
    """Resize a :class:`~sociogeo.datasets.socioseg.Sample` to the model's space (optionally to a square
    ``image_size`` first, e.g. small chips for quick runs); ground-truth boxes in that space.
    """
    from ..datasets.truth import gt_boxes

    mp, st, mk = sample.map_image, sample.satellite_image, sample.mask
    if image_size:
        mp = modelspace.resize_image(mp, (image_size, image_size))
        st = modelspace.resize_image(st, (image_size, image_size))
        mk = modelspace.resize_image(mk, (image_size, image_size))
    size = modelspace.model_size(*mp.shape[:2])
    mk = modelspace.resize_image(np.asarray(mk, bool), size)
    return ModelSample(
        sample.id, sample.query, modelspace.resize_image(mp, size), modelspace.resize_image(st, size), mk, gt_boxes(mk),
        image_size=tuple(mp.shape[:2]),
    )


def step_indices(step: int, per_step: int, n: int, seed: int, *, rank: int = 0, world: int = 1) -> list[int]:
    """Dataset indices for ``step``: a fresh permutation each epoch (seeded), ``per_step`` per
    step across all processes, every ``world``-th one for process ``rank``.

    Deterministic in (step, seed), so a resumed run sees the same data it would have seen.
    """
    if per_step % world:
        raise ConfigError(f"prompts per step ({per_step}) must be divisible by the number of processes ({world})")
    perms: dict[int, np.ndarray] = {}
    out = []
    for pos in range(step * per_step, (step + 1) * per_step):
        epoch, k = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = np.random.default_rng(seed + epoch).permutation(n)
        out.append(int(perms[epoch][k]))
    return out[rank::world]
