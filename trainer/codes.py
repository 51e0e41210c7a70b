"""The prior's data set: every selected image encoded once by the frozen VQ-VAE, stored with the run.

`<run>/pixelcnn/codes/` holds

- `train.npz`, `validation.npz`  `codes` (N, H, W, k) int32 and `tags` (N, T) float32 (multi-hot of
  `models.pixelcnn.conditionOnTags`; T = 0 for an unconditional prior), in the order of the file names
- `codes.json`  K, k, the grid, the counts and the tag names; written last, so a folder without it is
  an interrupted extraction and is redone.

Codes read back are checked against the VQ-VAE's codebook (index range and k): codes written by
another VQ-VAE are an `InputError` (exit 2), not a model silently trained on the wrong indices.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from argomlops.config import RunConfig
from argomlops.errors import InputError
from argomlops.trainer.data import select_images
from argomlops.trainer.logs import log
from argomlops.trainer.pipeline import image_dataset
from argomlops.trainer.storage import ArtifactStore
from argomlops.trainer.vqvae import encode_indices

CODES_DIR = "pixelcnn/codes"
VQVAE_MODEL = "vqvae/model.keras"
ENCODE_BATCH = 64


@dataclass(frozen=True)
class CodeSplit:
    """Code grids (N, H, W, k) int32 and their tag vectors (N, T) float32."""

    codes: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return int(self.codes.shape[0])


@dataclass(frozen=True)
class CodeSet:
    """The encoded train and validation splits and the codebook they index."""

    train: CodeSplit
    validation: CodeSplit
    num_embeddings: int
    codes_per_position: int
    tag_names: list[str]

    @property
    def grid(self) -> tuple[int, int]:
        """(H, W) of the code grids."""
        return int(self.train.codes.shape[1]), int(self.train.codes.shape[2])


def codebook_of(vqvae: keras.Model) -> tuple[int, int]:
    """(K, k) of a VQ-VAE built by `build_vqvae`: codebook size and codes per position."""
    quantizer = vqvae.get_layer("quantizer")
    return int(quantizer.num_embeddings), int(quantizer.codes_per_position)


def load_vqvae(store: ArtifactStore, parent: ArtifactStore | None = None) -> keras.Model:
    """The run's trained VQ-VAE, from `vqvae/model.keras` (or the parent run's, copied into this run).

    Raises InputError when neither has one: the prior needs a trained VQ-VAE.
    """
    import argomlops.trainer.quantizer  # noqa: F401  (registers VectorQuantizer for loading)

    source = store
    if not store.exists(VQVAE_MODEL):
        if parent is None or not parent.exists(VQVAE_MODEL):
            where = f"{store.uri}/{VQVAE_MODEL}" + (f" nor {parent.uri}/{VQVAE_MODEL}" if parent else "")
            raise InputError(f"pixelcnn: no trained VQ-VAE: neither {where} exists; run the vqvae stage first")
        source = parent
    with tempfile.TemporaryDirectory(prefix="argomlops-vqvae-") as temp:
        local = Path(temp) / "model.keras"
        source.download_file(VQVAE_MODEL, local)
        if source is not store:
            # The run keeps the VQ-VAE its prior was trained on, so `generate` needs only this run.
            store.upload_file(local, VQVAE_MODEL)
            log(f"pixelcnn: using the VQ-VAE of {source.uri}; copied to {store.uri}/{VQVAE_MODEL}")
        model: keras.Model = keras.models.load_model(local)
    return model


def check_codes(codes: np.ndarray, num_embeddings: int, codes_per_position: int, where: str) -> None:
    """Raise InputError unless `codes` is (N, H, W, k) integers in [0, K)."""
    if codes.ndim != 4 or codes.shape[-1] != codes_per_position:
        raise InputError(
            f"{where}: code grids have shape {tuple(codes.shape[1:])}, the VQ-VAE gives (H, W, {codes_per_position}) "
            f"(k = {codes_per_position} codes per position): these codes were not made by this run's VQ-VAE"
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"{where}: codes are {codes.dtype}, not integers")
    if codes.size and (codes.min() < 0 or codes.max() >= num_embeddings):
        raise InputError(
            f"{where}: code indices span {codes.min()}..{codes.max()}, the VQ-VAE codebook has "
            f"{num_embeddings} entries (0..{num_embeddings - 1}): these codes were not made by this run's VQ-VAE"
        )


def tag_vectors(paths: list[str], tags: dict[str, list[str]], names: list[str]) -> np.ndarray:
    """(N, T) multi-hot float32 of which of `names` each image carries."""
    vectors = np.zeros((len(paths), len(names)), np.float32)
    for i, path in enumerate(paths):
        carried = set(tags.get(path, []))
        vectors[i] = [name in carried for name in names]
    return vectors


def _encode(vqvae: keras.Model, paths: list[str], image_size: int) -> np.ndarray:
    if not paths:
        return np.zeros((0, 0, 0, codebook_of(vqvae)[1]), np.int32)
    batches = image_dataset(paths, image_size, ENCODE_BATCH, shuffle=False, seed=0, drop_remainder=False)
    return np.concatenate([encode_indices(vqvae, batch) for batch in batches], axis=0)


def _npz(split: CodeSplit) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, codes=split.codes, tags=split.tags)
    return out.getvalue()


def read_split(store: ArtifactStore, name: str) -> CodeSplit:
    """The stored `train` or `validation` split of `store`'s codes (unchecked: see `load_or_extract_codes`)."""
    with np.load(io.BytesIO(store.read_bytes(f"{CODES_DIR}/{name}.npz"))) as data:
        return CodeSplit(np.asarray(data["codes"]), np.asarray(data["tags"], np.float32))


def extract_codes(config: RunConfig, store: ArtifactStore, vqvae: keras.Model) -> CodeSet:
    """Encode the run's selected images with `vqvae` and store them under `pixelcnn/codes/`."""
    selection = select_images(config.data, log=log)
    names = list(config.models.pixelcnn.condition_on_tags)
    train_tags = tag_vectors(selection.train, selection.tags, names)
    # Checked before encoding: the tags alone decide it, the encoder pass is the slow part.
    if names and not train_tags.any():
        raise InputError(f"models.pixelcnn.conditionOnTags: no training image carries any of {names}")
    num_embeddings, k = codebook_of(vqvae)
    size = config.data.image_size
    train = CodeSplit(_encode(vqvae, selection.train, size), train_tags)
    validation_tags = tag_vectors(selection.validation, selection.tags, names)
    validation = CodeSplit(_encode(vqvae, selection.validation, size), validation_tags)
    for name, split in (("train", train), ("validation", validation)):
        store.write_bytes(f"{CODES_DIR}/{name}.npz", _npz(split))
    codes = CodeSet(train, validation, num_embeddings, k, names)
    store.write_json(
        f"{CODES_DIR}/codes.json",
        {
            "num_embeddings": num_embeddings,
            "codes_per_position": k,
            "grid": list(codes.grid),
            "train": len(train),
            "validation": len(validation),
            "tags": names,
        },
    )
    log(f"pixelcnn: encoded {len(train)} training and {len(validation)} validation images to {store.uri}/{CODES_DIR}")
    return codes


def load_or_extract_codes(config: RunConfig, store: ArtifactStore, vqvae: keras.Model) -> CodeSet:
    """The stored codes when complete (checked against `vqvae`), else a fresh extraction."""
    if not store.exists(f"{CODES_DIR}/codes.json"):
        return extract_codes(config, store, vqvae)
    meta: dict[str, Any] = store.read_json(f"{CODES_DIR}/codes.json")
    num_embeddings, k = codebook_of(vqvae)
    train, validation = read_split(store, "train"), read_split(store, "validation")
    for name, split in (("train", train), ("validation", validation)):
        check_codes(split.codes, num_embeddings, k, f"{store.uri}/{CODES_DIR}/{name}.npz")
    names = list(meta.get("tags", []))
    if names != list(config.models.pixelcnn.condition_on_tags):
        raise InputError(
            f"models.pixelcnn.conditionOnTags: {list(config.models.pixelcnn.condition_on_tags)} differs from "
            f"the tags {names} the stored codes in {store.uri}/{CODES_DIR} were made with"
        )
    log(f"pixelcnn: read {len(train)} training and {len(validation)} validation code grids from {CODES_DIR}")
    return CodeSet(train, validation, num_embeddings, k, names)
