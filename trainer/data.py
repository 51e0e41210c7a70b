"""Which images a run trains on: found, tag-filtered, checked and split (`select_images`).

`select_images` resolves the source (a built-in set, a local folder, or a gs:// prefix synced once to a
local cache), reads the optional metadata, filters by tags, drops unreadable files and splits train from
validation by a hash of each file's path. `pipeline.py` turns the chosen files into batches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argomlops.config import DataConfig
from argomlops.errors import InputError
from argomlops.trainer import demo_data, figures_data
from argomlops.trainer.builtin_sets import METADATA_NAME
from argomlops.trainer.storage import GS_SCHEME, cache_root, open_store, split_gs_uri, sync_to_cache

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# What tf.io.decode_image reads (checked on TF 2.21, WebP included); anything else is skipped.
_DECODABLE_FORMATS = {"PNG", "JPEG", "GIF", "BMP", "WEBP"}
# The metadata file each built-in set is written with.
# Every built-in set is built with the same metadata file (builtin_sets.METADATA_NAME).
_SHOWN_NAMES = 5
_CHECK_THREADS = 8


@dataclass(frozen=True)
class ImageSelection:
    """The images of a run, split; paths are local files, sorted."""

    train: list[str]
    validation: list[str]
    tags: dict[str, list[str]]
    skipped: int

    @property
    def all(self) -> list[str]:
        """Train and validation paths together, sorted."""
        return sorted(self.train + self.validation)


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    return shown + (f", ... ({len(names) - _SHOWN_NAMES} more)" if len(names) > _SHOWN_NAMES else "")


# --- 1. the source -------------------------------------------------------------------------------


def _source_root(config: DataConfig, log: Callable[[str], None]) -> Path:
    """The local folder holding the images: a built-in set, the folder itself, or the synced gs:// cache."""
    if config.source == "builtin:demo":
        return demo_data.ensure_demo(log=log)
    if config.source == "builtin:figures":
        return figures_data.ensure_figures(config.image_size, log=log)
    if config.source.startswith(GS_SCHEME):
        bucket, prefix = split_gs_uri(config.source)
        base = Path(config.cache_dir).expanduser() if config.cache_dir else cache_root() / "data"
        from google.api_core.exceptions import Forbidden, NotFound

        try:
            return sync_to_cache(config.source, base / bucket / prefix, log)
        except (NotFound, Forbidden) as exc:
            # A wrong bucket name or missing permission does not heal on retry: bad input, exit 2.
            raise InputError(f"data.source: cannot list {config.source} ({exc.code} {exc.message})") from exc
    root = Path(config.source).expanduser()
    if not root.is_dir():
        raise InputError(f"data.source: {config.source} is not a folder")
    return root


def _find_images(root: Path) -> list[str]:
    """Paths of the image files under `root`, relative to it (POSIX), sorted; hidden files are ignored."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.append(rel.as_posix())
    return sorted(found)


# --- 2. the metadata -----------------------------------------------------------------------------


def _metadata_text(where: str, root: Path) -> tuple[str, str]:
    """(location, text) of the metadata file `where`: relative to the source, an absolute path, or gs://."""
    try:
        if where.startswith(GS_SCHEME):
            bucket, key = split_gs_uri(where)
            return where, open_store(f"{GS_SCHEME}{bucket}").read_text(key)
        path = Path(where).expanduser()
        path = path if path.is_absolute() else root / path
        return str(path), path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InputError(f"data.metadata: {where} not found (relative paths are read from {root})") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"data.metadata: cannot read {where} ({exc})") from exc


def _parse_tags(value: Any, where: str) -> list[str]:
    """Tags from a list, a JSON list in a string, or a `;`-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: tags {text!r} is not a JSON list") from exc
        else:
            return [t.strip() for t in text.split(";") if t.strip()]
    if not isinstance(value, list):
        raise InputError(f"{where}: tags must be a list or a ';'-separated string, got {value!r}")
    return [str(t).strip() for t in value if str(t).strip()]


def _metadata_rows(where: str, text: str) -> list[tuple[str, str, Any]]:
    """(location, file, raw tags) of each row of a JSONL or CSV text; a malformed row is an InputError."""
    first = text.lstrip()[:1]
    is_jsonl = where.lower().endswith((".jsonl", ".ndjson", ".json")) or first == "{"
    rows: list[tuple[str, str, Any]] = []
    if is_jsonl:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"data.metadata: {where} line {number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("file"), str):
                raise InputError(f"data.metadata: {where} line {number}: expected an object with a 'file' string")
            rows.append((f"data.metadata: {where} line {number}", row["file"], row.get("tags")))
        return rows
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "file" not in [f.strip() for f in reader.fieldnames]:
        raise InputError(f"data.metadata: {where}: a CSV needs a header with columns file,tags")
    for row in reader:
        clean = {(k or "").strip(): v for k, v in row.items()}
        file = (clean.get("file") or "").strip()
        if not file:
            raise InputError(f"data.metadata: {where} line {reader.line_num}: empty 'file'")
        rows.append((f"data.metadata: {where} line {reader.line_num}", file, clean.get("tags")))
    return rows


def _relative_name(file: str, root: Path, source: str) -> str:
    """A metadata `file` as a path relative to the source (it may be relative, absolute or gs://)."""
    if file.startswith(GS_SCHEME):
        return file[len(source) :].lstrip("/") if file.startswith(source.rstrip("/") + "/") else file
    path = Path(file)
    if path.is_absolute():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            return file
    return Path(file).as_posix().removeprefix("./")


def _read_metadata(
    config: DataConfig, root: Path, images: set[str], log: Callable[[str], None]
) -> dict[str, list[str]] | None:
    """Tags of each listed image (relative path -> tags), or None without metadata; missing files are logged."""
    metadata = config.metadata
    if metadata is None and config.builtin:
        metadata = METADATA_NAME
    if metadata is None:
        return None
    where, text = _metadata_text(metadata, root)
    tags: dict[str, list[str]] = {}
    missing: list[str] = []
    for location, file, raw in _metadata_rows(where, text):
        name = _relative_name(file, root, config.source)
        if name not in images:
            missing.append(file)
            continue
        merged = tags.setdefault(name, [])
        merged.extend(t for t in _parse_tags(raw, location) if t not in merged)
    if missing:
        log(f"data: {len(missing)} files listed in {where} are not in the source, ignored: {_few(missing)}")
    return tags


def _filter_by_tags(names: list[str], tags: dict[str, list[str]], config: DataConfig) -> list[str]:
    """Images carrying any include tag (when given) and no exclude tag; an emptied selection is an InputError."""
    kept = names
    if config.include_tags:
        wanted = set(config.include_tags)
        kept = [n for n in kept if wanted & set(tags.get(n, []))]
        if not kept:
            known = sorted({t for ts in tags.values() for t in ts})
            raise InputError(
                f"data.includeTags: no image carries any of {config.include_tags} "
                f"(tags in the metadata: {_few(known) or 'none'})"
            )
    if config.exclude_tags:
        unwanted = set(config.exclude_tags)
        before = len(kept)
        kept = [n for n in kept if not unwanted & set(tags.get(n, []))]
        if not kept:
            raise InputError(f"data.excludeTags: {config.exclude_tags} excluded all {before} remaining images")
    return kept


# --- 3. readability ------------------------------------------------------------------------------


def is_readable_image(path: Path) -> bool:
    """Whether TensorFlow will decode this file: a known format whose structure checks out.

    A cheap pass (no full decode): PIL reads the header and verifies the chunks (PNG CRCs included), and
    a JPEG must hold its end-of-image marker, which catches truncated downloads that PIL's verify misses.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format not in _DECODABLE_FORMATS or image.width < 1 or image.height < 1:
                return False
            image.verify()
            if image.format == "JPEG":
                with open(path, "rb") as handle:
                    handle.seek(max(0, path.stat().st_size - 1024))
                    return b"\xff\xd9" in handle.read()
        return True
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _readable(root: Path, names: list[str], log: Callable[[str], None]) -> tuple[list[str], int]:
    """The names whose files can be decoded, and how many were dropped (logged with a few names)."""
    with ThreadPoolExecutor(max_workers=_CHECK_THREADS) as pool:
        ok = list(pool.map(lambda n: is_readable_image(root / n), names))
    bad = [n for n, good in zip(names, ok, strict=True) if not good]
    if bad:
        log(f"data: skipped {len(bad)} unreadable or corrupt images: {_few(bad)}")
    return [n for n, good in zip(names, ok, strict=True) if good], len(bad)


# --- 4. the split --------------------------------------------------------------------------------


def split_position(name: str) -> float:
    """A stable number in [0, 1) from the MD5 of a path relative to the source (same on every machine)."""
    return int(hashlib.md5(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:12], 16) / float(1 << 48)


def split_names(names: Sequence[str], validation_fraction: float) -> tuple[list[str], list[str]]:
    """(train, validation) by path hash; with >= 2 images and a fraction > 0 both sides get at least one."""
    ordered = sorted(names, key=split_position)
    validation = [n for n in ordered if split_position(n) < validation_fraction]
    train = [n for n in ordered if split_position(n) >= validation_fraction]
    if validation_fraction > 0 and len(ordered) >= 2:
        # The lowest hashes are the closest to the validation side, the highest to the train side.
        if not validation:
            validation, train = train[:1], train[1:]
        elif not train:
            validation, train = validation[:-1], validation[-1:]
    return sorted(train), sorted(validation)


def select_images(config: DataConfig, log: Callable[[str], None] = print) -> ImageSelection:
    """The images of a run: found, tag-filtered, checked and split (see the module docstring).

    Raises InputError when the source is missing or the selection ends up empty, naming the filter.
    """
    root = _source_root(config, log)
    names = _find_images(root)
    if not names:
        raise InputError(f"data.source: no images ({' '.join(IMAGE_SUFFIXES)}) found in {config.source}")
    tags = _read_metadata(config, root, set(names), log)
    selected = _filter_by_tags(names, tags or {}, config)
    readable, skipped = _readable(root, selected, log)
    if not readable:
        raise InputError(f"data.source: all {len(selected)} selected images in {config.source} are unreadable")
    train, validation = split_names(readable, config.validation_fraction)
    if len(readable) == 1:
        log("data: only one image, used for training; there is no validation image")
    filtered = f", {len(selected)} after tag filters" if len(selected) != len(names) else ""
    log(
        f"data: {len(readable)} images from {config.source} ({len(names)} found{filtered}, {skipped} skipped): "
        f"{len(train)} train, {len(validation)} validation"
    )
    local = {n: str(root / n) for n in readable}
    return ImageSelection(
        train=sorted(local[n] for n in train),
        validation=sorted(local[n] for n in validation),
        tags={local[n]: list((tags or {}).get(n, [])) for n in readable},
        skipped=skipped,
    )
