"""Model weights on the Hugging Face Hub: is a repository in the local cache, can it be
downloaded, how big is it. Answers fast, so a missing model fails in seconds, not after minutes
of retries.
"""

from __future__ import annotations

from pathlib import Path

from .._text import one_line

# weight formats transformers does not load when safetensors are present
_UNUSED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".gguf", ".ot")


def looks_local(name) -> bool:
    """Whether ``name`` is meant as a local path rather than a hub id: a path object, an absolute,
    home- or dot-relative path, more than one ``/``, a backslash, or an ``owner/name`` whose first
    part is an existing local folder (``models/vlm`` next to a ``models`` folder).
    """
    import os

    if isinstance(name, os.PathLike):
        return True
    text = str(name)
    if text.startswith(("http://", "https://")):
        return False
    if text.startswith(("/", "./", "../", "~", ".\\")) or text in (".", "..") or "\\" in text or text.count("/") > 1:
        return True
    return Path(text).expanduser().exists() or (text.count("/") == 1 and Path(text.split("/")[0]).is_dir())


def is_hub_id(name) -> bool:
    """True for ``owner/name`` strings that are not meant as a local path (:func:`looks_local`)."""
    return str(name).count("/") == 1 and not looks_local(name)


def probe_weights(repo_ids, *, cache_dir=None) -> dict[str, int | None]:
    """Which of the hub repositories ``repo_ids`` still have to be downloaded, with their download
    size in bytes (None when the Hub does not say); empty when all are in the local cache.

    The local cache is checked without network access. For a missing repository the Hub is asked
    for its file list (one small request, no weights). Raises
    :class:`~sociogeo.errors.ModelNotFoundError` when a missing repository cannot be downloaded:
    offline mode (``HF_HUB_OFFLINE`` or ``sociogeo.options.offline``), no network, or no such
    repository.
    """
    from .._optional import require
    from ..errors import ModelNotFoundError
    from ..options import options

    require("huggingface_hub", purpose="downloading model weights")
    from huggingface_hub import HfApi

    missing: dict[str, int | None] = {}
    for repo in repo_ids:
        if weights_cached(repo, cache_dir=cache_dir):
            continue
        if options.offline_requested():
            raise ModelNotFoundError(
                f"the weights of {repo} are not in the Hugging Face cache and offline mode is on "
                "(HF_HUB_OFFLINE or sociogeo.options.offline); run once with network access, or "
                f"`hf download {repo}` on a connected machine"
            )
        try:
            info = HfApi().model_info(repo, files_metadata=True, timeout=options.timeout_s)
        except Exception as exc:  # no network, DNS, 404, gated: all mean "cannot download now"
            raise ModelNotFoundError(
                f"cannot reach {repo} on the Hugging Face Hub ({type(exc).__name__}: {one_line(str(exc), 160)}). "
                f"To use it without network: on a connected machine run `hf download {repo}`, then pass the "
                "downloaded folder instead of the id, or point HF_HOME (or cache_dir=) at that cache"
            ) from exc
        missing[repo] = _download_size(info)
    return missing


def announce_downloads(specs, *, cache_dir=None, offline: bool | None = None) -> dict[str, int | None]:
    """Probe the hub ids among ``specs`` (other specs are skipped) and print one line per model
    that will be downloaded, with its size; returns :func:`probe_weights`' answer.

    Raises :class:`~sociogeo.errors.ModelNotFoundError` at once when a missing model cannot be
    downloaded, so nothing waits on minutes of download retries.
    """
    import os
    import sys

    from ..options import options

    repos = [str(s) for s in specs if isinstance(s, (str, os.PathLike)) and is_hub_id(s)]
    if not repos:
        return {}
    with options.context(offline=bool(options.offline_requested() if offline is None else offline)):
        missing = probe_weights(repos, cache_dir=cache_dir)
    if options.progress:
        for repo, size in missing.items():
            gb = f"{size / 1e9:.1f} GB" if size else "size unknown"
            print(f"sociogeo: downloading {repo} ({gb}) into the Hugging Face cache", file=sys.stderr)
    return missing


def weights_cached(repo: str, *, cache_dir=None) -> bool:
    """Whether the local Hugging Face cache holds a complete snapshot of ``repo``'s weights
    (config.json and every safetensors shard its index names); never touches the network.
    """
    import json

    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True))
    except Exception:  # noqa: BLE001 (not cached, or a broken cache entry: either way unusable)
        return False
    if not (folder / "config.json").is_file():
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError):
            return False
        return all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("*.safetensors"))


def _download_size(info) -> int | None:
    files = [(s.rfilename, s.size) for s in (info.siblings or [])]
    if any(name.endswith(".safetensors") for name, _ in files):
        files = [(n, s) for n, s in files if not n.endswith(_UNUSED_WEIGHT_SUFFIXES)]
    sizes = [s for _, s in files if s is not None]
    return sum(sizes) if sizes else None
