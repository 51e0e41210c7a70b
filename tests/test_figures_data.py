"""The drawn `builtin:figures` set: deterministic builds, one pose tag per image, tags that match the pixels,
variety, poses that differ in shape, and selection through `data.source: builtin:figures`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from argomlops.config import DataConfig
from argomlops.trainer import figures_data
from argomlops.trainer.data import select_images
from argomlops.trainer.figures_draw import BACKGROUNDS, Drawn, draw_figure
from argomlops.trainer.figures_pose import POSES

SIZE = 32
DRAWN = 300  # 60 per pose


class Log(list[str]):
    """Collects the lines a function logs."""

    def __call__(self, line: str) -> None:
        self.append(line)


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _rows(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / figures_data.METADATA_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def drawn() -> list[Drawn]:
    """The first DRAWN figures at SIZE px with the set's seed, masks included."""
    return [draw_figure(i, SIZE, figures_data.SEED) for i in range(DRAWN)]


def _uncropped(drawn: list[Drawn], pose: str) -> list[Drawn]:
    found = [d for d in drawn if d.tags[0] == pose and "cropped" not in d.tags]
    assert len(found) >= 40, f"too few uncropped {pose} figures to judge"
    return found


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows and columns the figure covers, inclusive."""
    rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(rows[0]), int(rows[-1]), int(columns[0]), int(columns[-1])


# --- builds --------------------------------------------------------------------------------------


def test_two_builds_are_byte_identical_and_a_seed_changes_them(tmp_path: Path) -> None:
    log = Log()
    first = figures_data.ensure_figures(SIZE, tmp_path / "a", log, per_pose=4)
    assert any("drew 20 figures" in line for line in log)
    # The second build draws in two worker processes: the split of the work must not change a byte.
    (tmp_path / "b").mkdir()
    assert figures_data._build(tmp_path / "b", SIZE, 4, figures_data.SEED, workers=2) == 20
    assert _digests(tmp_path / "b") == _digests(first)
    assert len(_digests(first)) == 4 * len(POSES) + 1
    assert not [p for p in tmp_path.iterdir() if p.name not in ("a", "b")]  # renamed into place
    other = figures_data.ensure_figures(SIZE, tmp_path / "c", per_pose=4, seed=figures_data.SEED + 1)
    changed = [n for n, d in _digests(other).items() if n.endswith(".png") and _digests(first)[n] != d]
    assert len(changed) == 4 * len(POSES)
    # A built folder is reused as it is, not drawn again.
    again = Log()
    assert figures_data.ensure_figures(SIZE, first, again, per_pose=4) == first and not again


def test_the_cache_folder_names_version_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGOMLOPS_CACHE", str(tmp_path))
    assert figures_data.figures_dir(48) == tmp_path / "figures" / figures_data.FIGURES_VERSION / "48px"


def test_files_hold_the_drawn_images_at_the_configured_size(tmp_path: Path, drawn: list[Drawn]) -> None:
    from PIL import Image

    root = figures_data.ensure_figures(SIZE, tmp_path / "f", per_pose=2)
    for index, row in enumerate(_rows(root)):
        with Image.open(root / str(row["file"])) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"
            assert np.array_equal(np.asarray(image), drawn[index].image)
        assert row["tags"] == drawn[index].tags


# --- tags ----------------------------------------------------------------------------------------


def test_each_image_has_exactly_one_pose_tag_and_the_poses_are_balanced(tmp_path: Path) -> None:
    rows = _rows(figures_data.ensure_figures(SIZE, tmp_path / "f", per_pose=12))
    poses = [[t for t in row["tags"] if t in POSES] for row in rows]  # type: ignore[attr-defined]
    assert all(len(p) == 1 for p in poses)
    assert Counter(p[0] for p in poses) == {pose: 12 for pose in POSES}
    for row, (pose,) in zip(rows, poses, strict=True):
        tags = list(row["tags"])  # type: ignore[call-overload]
        assert str(row["file"]).startswith(f"{pose}-")
        facing = [t for t in tags if t.startswith("facing-")]
        assert len(facing) == (0 if pose == "lying" else 1)
        assert len([t for t in tags if t in ("trousers", "skirt", "dress")]) == 1
    assert len({str(r["file"]) for r in rows}) == len(rows)


def test_cropped_is_tagged_exactly_when_the_figure_touches_the_border(drawn: list[Drawn]) -> None:
    for index, d in enumerate(drawn):
        border = np.concatenate([d.mask[0], d.mask[-1], d.mask[:, 0], d.mask[:, -1]])
        assert ("cropped" in d.tags) == bool(border.any()), f"image {index}: tags {d.tags}"
    share = sum("cropped" in d.tags for d in drawn) / len(drawn)
    assert 0.08 < share < 0.25


def test_figures_front_and_profile_views_are_tagged_as_drawn(drawn: list[Drawn]) -> None:
    # From the front both arms hang symmetrically; the facing tag follows the view the pose was drawn in.
    front = Counter(d.tags[0] for d in drawn if "facing-front" in d.tags)
    assert set(front) == {"standing", "arms-raised"} and front["arms-raised"] == DRAWN // len(POSES)
    sides = Counter(t for d in drawn for t in d.tags if t in ("facing-left", "facing-right"))
    assert min(sides.values()) > 0.35 * sum(sides.values())


# --- variety -------------------------------------------------------------------------------------


def test_backgrounds_skin_tones_and_sizes_vary(drawn: list[Drawn]) -> None:
    assert Counter(d.background for d in drawn).keys() == set(BACKGROUNDS)
    corners = {tuple(d.image[0, 0]) for d in drawn}
    assert len(corners) > 0.8 * len(drawn)
    lumas = np.array([np.dot(d.skin, [0.299, 0.587, 0.114]) / 255 for d in drawn])
    assert lumas.max() - lumas.min() > 0.5 and lumas.std() > 0.1
    heights = [_box(d.mask)[1] - _box(d.mask)[0] + 1 for d in _uncropped(drawn, "standing")]
    assert max(heights) >= 1.25 * min(heights)
    # Figures fill a good share of the frame.
    assert np.median(heights) >= 0.65 * SIZE


def test_every_figure_is_lit_from_one_side(drawn: list[Drawn]) -> None:
    # Inside the figure, colours are not flat: each part has a lit and a shaded side.
    for d in drawn[:50]:
        inside = d.image[d.mask == 255].astype(float)
        assert len(np.unique(inside.round(-1), axis=0)) > 5


# --- poses differ in shape -----------------------------------------------------------------------


def test_lying_figures_are_wide_and_standing_ones_tall(drawn: list[Drawn]) -> None:
    for pose, low, high in (("lying", 0.0, 0.6), ("standing", 1.8, 9.0), ("walking", 1.0, 2.2), ("sitting", 1.0, 2.4)):
        for d in _uncropped(drawn, pose):
            top, bottom, left, right = _box(d.mask)
            assert low < (bottom - top + 1) / (right - left + 1) < high, f"{pose}: {d.tags}"


def test_arms_raised_reach_above_the_head_and_other_poses_do_not(drawn: list[Drawn]) -> None:
    for pose in ("arms-raised", "standing", "walking", "sitting"):
        for d in _uncropped(drawn, pose):
            rows = np.nonzero(d.mask.any(axis=1))[0]
            above = int((rows + 1 <= d.head_box[1]).sum())  # whole rows of figure above the top of the head
            assert (above >= 2) == (pose == "arms-raised"), f"{pose}: {above} rows above the head"


def test_walking_figures_stride_and_standing_ones_keep_their_feet_together(drawn: list[Drawn]) -> None:
    def stride(d: Drawn) -> float:
        top, bottom, _, _ = _box(d.mask)
        height = bottom - top + 1
        feet = d.mask[bottom - max(1, height // 10) + 1 : bottom + 1].any(axis=0).nonzero()[0]
        return (feet[-1] - feet[0] + 1) / height

    assert min(stride(d) for d in _uncropped(drawn, "walking")) > 0.45
    assert max(stride(d) for d in _uncropped(drawn, "standing")) < 0.4


# --- the data source -----------------------------------------------------------------------------


@pytest.fixture
def small_figures_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ARGOMLOPS_CACHE set to a fresh folder whose figures set at SIZE px holds 12 images per pose."""
    monkeypatch.setenv("ARGOMLOPS_CACHE", str(tmp_path))
    figures_data.ensure_figures(SIZE, figures_data.figures_dir(SIZE), per_pose=12)
    return tmp_path


def test_select_images_keeps_only_the_included_pose(small_figures_cache: Path) -> None:
    config = DataConfig(source="builtin:figures", image_size=SIZE, include_tags=["sitting"])
    selection = select_images(config, Log())
    assert len(selection.all) == 12
    assert all(Path(p).name.startswith("sitting-") for p in selection.all)
    assert all("sitting" in tags and not set(tags) & (set(POSES) - {"sitting"}) for tags in selection.tags.values())
    assert all(Path(p).is_relative_to(small_figures_cache / "figures") for p in selection.all)
    everything = select_images(DataConfig(source="builtin:figures", image_size=SIZE, exclude_tags=["cropped"]), Log())
    assert 0 < len(everything.all) < 12 * len(POSES)
    assert all("cropped" not in tags for tags in everything.tags.values())


def test_pose_tags_condition_a_prior_as_one_hot_vectors(small_figures_cache: Path) -> None:
    from argomlops.trainer.codes import tag_vectors

    selection = select_images(DataConfig(source="builtin:figures", image_size=SIZE), Log())
    vectors = tag_vectors(selection.train, selection.tags, list(POSES))
    assert vectors.shape == (len(selection.train), len(POSES))
    assert (vectors.sum(axis=1) == 1).all()
    assert (vectors.sum(axis=0) > 0).all()


def test_an_unknown_builtin_set_is_refused() -> None:
    with pytest.raises(ValueError, match=r"builtin:demo, builtin:figures"):
        DataConfig(source="builtin:mnist")
