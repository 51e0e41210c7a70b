"""One image of the `builtin:figures` data set: a posed, dressed figure painted into a lit scene.

`draw_figure(index, size, seed)` draws everything from `np.random.default_rng([seed, index])`: the pose
(`POSES[index % 5]`, so the poses are balanced), body, outfit, palette, background, light and framing.
It paints at `size` times a supersampling factor with Pillow's ImageDraw, each part shaded on the side away
from the light, over a soft floor shadow, and shrinks the canvas with a Lanczos filter so edges stay smooth
at 32 px. The figure's coverage mask comes back with the image, so tests can check what the tags claim.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from argomlops.trainer.figures_dress import Part, Shape, dress, sample_look, seat_parts
from argomlops.trainer.figures_pose import POSES, pose_skeleton, sample_body

BACKGROUNDS = ("flat", "gradient", "room")
# Realistic skin tones, light to dark; a figure's tone is a random point between two neighbours.
SKIN_TONES = np.array(
    [(255, 224, 196), (243, 206, 176), (234, 189, 157), (219, 166, 128), (198, 140, 99),
     (170, 115, 80), (141, 92, 62), (112, 72, 48), (86, 54, 38), (62, 40, 30)],
    dtype=float,
)  # fmt: skip
HAIR = np.array(
    [(28, 24, 22), (58, 38, 26), (96, 64, 40), (136, 70, 38), (196, 160, 104), (222, 196, 146), (150, 148, 146)],
    dtype=float,
)
_HAIR_WEIGHTS = np.array([0.26, 0.24, 0.18, 0.08, 0.1, 0.06, 0.08])
CROPPED_SHARE = 0.16
# Which edges may cut each pose, and by what share of the figure, so that the pose still reads: arms-raised
# may lose its fingertips or its feet but not an arm, a sitting figure not its seat, a walking one not its stride.
_CROP_SIDES = {
    "standing": ("left", "right", "top", "bottom"),
    "sitting": ("left", "right", "top"),
    "walking": ("left", "right", "top"),
    "arms-raised": ("top", "bottom"),
    "lying": ("left", "right"),
}
_CROP_DEPTH = {"left": (0.1, 0.25), "right": (0.1, 0.25), "top": (0.05, 0.15), "bottom": (0.1, 0.3)}
_EYE = (35, 28, 26)


@dataclass(frozen=True)
class Drawn:
    """One drawn image, the figure's coverage and what is true of it."""

    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) uint8: how much of each pixel the figure covers (seat and shadow not)
    tags: list[str]
    head_box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels, hair included
    skin: tuple[int, int, int]
    background: str


def supersampling(size: int) -> int:
    """How many canvas pixels make one image pixel along a side: more for small images."""
    return 4 if size <= 96 else 2


def _luma(colour: np.ndarray) -> float:
    return float(colour @ np.array([0.299, 0.587, 0.114]) / 255)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255


def _apart(
    rng: np.random.Generator,
    draw: Callable[[np.random.Generator], np.ndarray],
    others: list[np.ndarray],
    contrast: float,
) -> np.ndarray:
    """A colour from `draw(rng)` whose luma differs from each of `others` by `contrast`, or the best of 24 tries."""
    best, best_gap = None, -1.0
    for _ in range(24):
        colour = draw(rng)
        gap = min(abs(_luma(colour) - _luma(o)) for o in others)
        if gap >= contrast:
            return colour
        if gap > best_gap:
            best, best_gap = colour, gap
    assert best is not None
    return best


def _clothes(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.12, 0.85), rng.uniform(0.18, 0.95))


def _scene_colours(rng: np.random.Generator, skin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wall, floor) colours that leave the skin readable."""
    wall = _apart(rng, lambda r: _hsv(r.random(), r.uniform(0, 0.35), r.uniform(0.3, 0.95)), [skin], 0.14)
    if rng.random() < 0.6:  # wood
        floor = _apart(
            rng, lambda r: _hsv(r.uniform(0.05, 0.11), r.uniform(0.3, 0.6), r.uniform(0.25, 0.75)), [skin], 0.12
        )
    else:
        floor = _apart(rng, lambda r: _hsv(r.random(), r.uniform(0, 0.2), r.uniform(0.2, 0.8)), [skin], 0.12)
    return wall, floor


def _palette(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(colour of each part role, wall, floor)."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    skin = SKIN_TONES[low] + (SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[low]) * (tone - low)
    wall, floor = _scene_colours(rng, skin)
    top = _apart(rng, _clothes, [wall, floor], 0.2)
    bottom = _apart(rng, _clothes, [wall, floor, top], 0.12)
    shoes = _hsv(rng.random(), rng.uniform(0, 0.5), rng.choice([rng.uniform(0.08, 0.35), rng.uniform(0.8, 0.95)]))
    seat = _apart(
        rng, lambda r: _hsv(r.uniform(0.04, 0.12), r.uniform(0.3, 0.7), r.uniform(0.25, 0.7)), [wall, floor], 0.1
    )
    hair = HAIR[rng.choice(len(HAIR), p=_HAIR_WEIGHTS)] * rng.uniform(0.9, 1.1)
    roles = {"skin": skin, "top": top, "bottom": bottom, "shoes": shoes, "seat": seat, "hair": hair}
    roles["eye"] = np.array(_EYE, dtype=float)
    return {k: np.clip(v, 0, 255) for k, v in roles.items()}, wall, floor


def _bounds(parts: list[Part]) -> np.ndarray:
    """[x0, y0, x1, y1] enclosing every shape of `parts`."""
    boxes = np.array([s.bounds() for p in parts for s in p.shapes])
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def _place(
    rng: np.random.Generator, everything: np.ndarray, figure: np.ndarray, canvas: int, margin: float, pose: str
) -> tuple[float, float, float, bool]:
    """(scale, x offset, y offset, cropped): canvas x = ox + scale x, canvas y = oy - scale y.

    Uncropped figures (and their seats) stay `margin` inside the frame; a cropped figure reaches past one of
    the edges `_CROP_SIDES` allows its pose, by a share of its own extent drawn from `_CROP_DEPTH`.
    """
    cropped = rng.random() < CROPPED_SHARE
    width, height = everything[2] - everything[0], everything[3] - everything[1]
    fill = rng.uniform(0.8, 1.05) if cropped else rng.uniform(0.62, 0.92)
    scale = fill * canvas / max(width, height)
    if not cropped:
        scale = min(scale, (canvas - 2 * margin) / max(width, height))
    # Offsets that keep everything inside the margin, each side chosen uniformly.
    low_x, high_x = margin - scale * everything[0], canvas - margin - scale * everything[2]
    # The floor (y = 0 at canvas row oy) stays in the lower half, so nobody floats near the top of the frame.
    low_y, high_y = margin + scale * everything[3], canvas - margin + scale * everything[1]
    low_y = min(max(low_y, canvas * 0.5), high_y)
    # max(): when the scale is set by the margin the range is empty up to rounding.
    ox = low_x + max(high_x - low_x, 0.0) * rng.random()
    oy = low_y + max(high_y - low_y, 0.0) * rng.random()
    if cropped:
        sides = _CROP_SIDES[pose]
        side = sides[int(rng.integers(len(sides)))]
        past = rng.uniform(*_CROP_DEPTH[side])
        fx0, fy0, fx1, fy1 = figure * scale
        if side == "left":
            ox = -fx0 - past * (fx1 - fx0)
        elif side == "right":
            ox = canvas - fx1 + past * (fx1 - fx0)
        elif side == "top":
            oy = fy1 - past * (fy1 - fy0)
        else:
            oy = canvas + fy0 + past * (fy1 - fy0)
    fx0, fy0, fx1, fy1 = figure * scale
    outside = ox + fx0 < 0 or ox + fx1 > canvas or oy - fy1 < 0 or oy - fy0 > canvas
    return float(scale), float(ox), float(oy), bool(outside)


def _background(
    rng: np.random.Generator, kind: str, wall: np.ndarray, floor: np.ndarray, size: int, horizon: float, light: float
) -> Image.Image:
    """A flat wall, a vertical gradient, or a wall meeting the floor at row `horizon`; brighter towards the light.

    Computed at the image's own size (it is smooth; the horizon falls on a pixel boundary) and enlarged to the
    canvas by the caller.
    """
    rows = np.linspace(0, 1, size)[:, None]
    if kind == "flat":
        colours = np.broadcast_to(wall, (size, 3))
    elif kind == "gradient":
        top, bottom = wall * rng.uniform(1.0, 1.3), wall * rng.uniform(0.55, 0.9)
        colours = top + (bottom - top) * rows
    else:
        below = np.arange(size)[:, None] >= horizon
        colours = np.where(below, floor * (0.85 + 0.3 * np.clip(rows - horizon / size, 0, 1)), wall)
    columns = (1 + 0.12 * light * (np.linspace(0, 1, size) - 0.5))[None, :, None]
    return Image.fromarray(np.clip(colours[:, None, :] * columns + 0.5, 0, 255).astype(np.uint8), "RGB")


def _shadow(
    image: Image.Image,
    parts: list[Part],
    to_canvas: Callable[[np.ndarray], np.ndarray],
    scale: float,
    light: float,
    rng: np.random.Generator,
) -> None:
    """Darken the floor softly under what touches it, the shadow cast away from the light."""
    low = np.concatenate([s.points for p in parts for s in p.shapes])
    low = low[low[:, 1] < 0.12]
    shift = -light * rng.uniform(0.02, 0.12)
    x0, x1 = low[:, 0].min() + min(shift, 0) - 0.05, low[:, 0].max() + max(shift, 0) + 0.05
    depth = rng.uniform(0.025, 0.045)
    (cx0, cy0), (cx1, cy1) = to_canvas(np.array([[x0, depth * 0.8], [x1, -depth * 0.6]]))
    blur = float(scale) * 0.025
    # Drawn and blurred only around the ellipse: a whole 640 px canvas would cost more than the figure.
    pad = 3 * blur + 2
    left, top = int(max(cx0 - pad, 0)), int(max(cy0 - pad, 0))
    box = (left, top, int(min(cx1 + pad, image.width)), int(min(cy1 + pad, image.height)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return
    mask = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
    ImageDraw.Draw(mask).ellipse(
        [cx0 - box[0], cy0 - box[1], cx1 - box[0], cy1 - box[1]], fill=int(255 * rng.uniform(0.3, 0.5))
    )
    image.paste((0, 0, 0), box, mask.filter(ImageFilter.GaussianBlur(blur)))


def _outline(draw: ImageDraw.ImageDraw, shape: Shape, points: np.ndarray) -> None:
    """Fill one shape given in canvas pixels."""
    if shape.width <= 0:
        draw.polygon([tuple(p) for p in points], fill=255)
        return
    radius = shape.width / 2
    (ax, ay), (bx, by) = points
    for x, y in ((ax, ay), (bx, by)):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    length = float(np.hypot(bx - ax, by - ay))
    if length > 0:
        nx, ny = (ay - by) / length * radius, (bx - ax) / length * radius
        draw.polygon([(ax + nx, ay + ny), (bx + nx, by + ny), (bx - nx, by - ny), (ax - nx, ay - ny)], fill=255)


def _paint(
    canvas: Image.Image, figure_mask: Image.Image, part: Part, colour: np.ndarray, shade: float, light: np.ndarray
) -> None:
    """Paint `part` (in canvas pixels): lit where the outline moved towards the light still covers it, else shaded."""
    bounds = np.array([s.bounds() for s in part.shapes])
    reach = float(np.abs(light).max() + 3 * part.thickness * 0.15 + 2)  # the blur's reach included
    x0, y0 = np.floor(bounds[:, :2].min(axis=0) - reach).astype(int)
    x1, y1 = np.ceil(bounds[:, 2:].max(axis=0) + reach).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, canvas.width), min(y1, canvas.height)
    if x1 <= x0 or y1 <= y0:
        return
    box, origin = (int(x0), int(y0), int(x1), int(y1)), np.array([x0, y0], dtype=float)
    mask = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
    draw = ImageDraw.Draw(mask)
    for shape in part.shapes:
        _outline(draw, shape, shape.points - origin)
    base = tuple(int(c + 0.5) for c in colour)
    if part.thickness > 0:
        moved = Image.new("L", mask.size, 0)
        draw = ImageDraw.Draw(moved)
        for shape in part.shapes:
            _outline(draw, shape, shape.points - origin + light)
        lit = ImageChops.multiply(mask, moved.filter(ImageFilter.GaussianBlur(float(part.thickness) * 0.15)))
        canvas.paste(tuple(int(c * shade + 0.5) for c in colour), box, mask)
        canvas.paste(base, box, lit)
    else:
        canvas.paste(base, box, mask)
    if part.figure:
        figure_mask.paste(255, box, mask)


def _mapped(parts: list[Part], sx: float, sy: float, dx: float, dy: float) -> list[Part]:
    """`parts` with every point mapped (x, y) -> (dx + sx x, dy + sy y); widths scale by |sx| (|sy| is the same)."""
    factor, shift = np.array([sx, sy]), np.array([dx, dy])
    return [
        replace(
            part,
            shapes=tuple(Shape(s.points * factor + shift, s.width * abs(sx)) for s in part.shapes),
            thickness=part.thickness * abs(sx),
        )
        for part in parts
    ]


def draw_figure(index: int, size: int, seed: int) -> Drawn:
    """Image `index` of the set drawn with `seed`, `size` pixels square (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    pose = POSES[index % len(POSES)]
    body = sample_body(rng)
    look = sample_look(rng)
    skeleton = pose_skeleton(pose, body, rng)
    seat = seat_parts(skeleton.seat) if skeleton.seat is not None else []
    mirror = bool(rng.random() < 0.5)
    raw = [*seat, *dress(skeleton, body, look)]
    # Mirrored to face left half the time, and lowered so the lowest point (a sole, a seat's leg, a lying
    # figure's back) rests on the floor at y = 0.
    parts = _mapped(raw, -1.0 if mirror else 1.0, 1.0, 0.0, -float(_bounds(raw)[1]))
    palette, wall, floor = _palette(rng)
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    side = 1.0 if rng.random() < 0.5 else -1.0  # the light comes from the right (1) or the left
    elevation = np.radians(rng.uniform(25, 65))
    shade = rng.uniform(0.52, 0.68)

    ss = supersampling(size)
    canvas = size * ss
    figure = _bounds([p for p in parts if p.figure])
    scale, ox, oy, cropped = _place(rng, _bounds(parts), figure, canvas, 2.0 * ss, pose)
    horizon = oy - scale * rng.uniform(0.1, 0.35)
    image = _background(rng, kind, wall, floor, size, horizon / ss, side).resize(
        (canvas, canvas), Image.Resampling.NEAREST
    )
    _shadow(image, parts, lambda p: np.stack([ox + scale * p[:, 0], oy - scale * p[:, 1]], axis=1), scale, side, rng)
    mask = Image.new("L", image.size, 0)
    towards = np.array([side * np.cos(elevation), -np.sin(elevation)])
    heads = []
    for part in _mapped(parts, scale, -scale, ox, oy):
        colour = palette[part.role] * (0.8 if part.far else 1.0)
        _paint(image, mask, part, colour, shade, towards * 0.4 * part.thickness)
        if part.head:
            heads.append(part)
    head_box = _bounds(heads) / ss
    facing = "facing-front" if skeleton.view == "front" else ("facing-left" if mirror else "facing-right")
    tags = [pose, *([facing] if pose != "lying" else []), look.clothing, *(["cropped"] if cropped else [])]
    return Drawn(
        image=np.asarray(image.resize((size, size), Image.Resampling.LANCZOS)),
        mask=np.asarray(mask.resize((size, size), Image.Resampling.BOX)),
        tags=tags,
        head_box=(float(head_box[0]), float(head_box[1]), float(head_box[2]), float(head_box[3])),
        skin=(int(palette["skin"][0]), int(palette["skin"][1]), int(palette["skin"][2])),
        background=kind,
    )
