"""Flesh, clothes, hair and seats on a skeleton of `figures_pose`: the parts a figure is painted from.

Each `Part` is a list of outlines in body units with a colour role (`skin`, `top`, `bottom`, ...) that
`figures_draw` maps to this image's palette; parts are listed back to front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from argomlops.trainer.figures_pose import Body, Seat, Skeleton, Vector

CLOTHING = ("trousers", "skirt", "dress")
_ELLIPSE_POINTS = 32


@dataclass(frozen=True)
class Shape:
    """One filled outline: a polygon, or (width > 0) a segment between two points with round ends."""

    points: Vector  # (N, 2)
    width: float = 0.0

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) enclosing the outline."""
        low, high = self.points.min(axis=0) - self.width / 2, self.points.max(axis=0) + self.width / 2
        return float(low[0]), float(low[1]), float(high[0]), float(high[1])


@dataclass(frozen=True)
class Part:
    """Shapes painted in one colour role, shaded on the side away from the light `thickness` deep."""

    role: str  # skin, hair, top, bottom, shoes, eye, seat
    shapes: tuple[Shape, ...]
    thickness: float = 0.0  # body units; 0 paints it flat
    far: bool = False  # the far side of a profile, painted darker
    figure: bool = True  # the person (its mask decides `cropped`), not the seat
    head: bool = False  # counted in the head box


@dataclass(frozen=True)
class Look:
    """What a figure wears and how its hair is done."""

    clothing: str  # one of CLOTHING
    sleeves: str  # long, short, none
    hair: str  # short, long, bun, bald
    hem: float  # skirt length: a share of the thigh (> 1 reaches down the shin)
    flare: float  # how far a skirt's hem stands off the legs
    top_end: float  # where the top ends, a share of the torso above the hips (the waist is at 0.42)


def sample_look(rng: np.random.Generator) -> Look:
    """A random outfit and hair style."""
    clothing = str(rng.choice(CLOTHING, p=[0.5, 0.25, 0.25]))
    sleeves = ["long", "short", "none"] if clothing != "dress" else ["short", "none", "none"]
    return Look(
        clothing=clothing,
        sleeves=str(rng.choice(sleeves)),
        hair=str(rng.choice(["short", "long", "bun", "bald"], p=[0.42, 0.36, 0.14, 0.08])),
        hem=rng.uniform(0.55, 1.35),
        flare=rng.uniform(0.01, 0.05),
        top_end=rng.uniform(-0.02, 0.42),
    )


def _capsule(a: Vector, b: Vector, width: float) -> Shape:
    return Shape(np.stack([a, b]), width)


def _ellipse(centre: Vector, axis: Vector, along: float, across: float) -> Vector:
    """(N, 2) points of an ellipse with half-axes `along` the unit vector `axis` and `across` it."""
    angles = np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    side = np.array([axis[1], -axis[0]])
    return centre + np.outer(np.cos(angles) * along, axis) + np.outer(np.sin(angles) * across, side)


def _tube(centres: list[Vector], widths: list[float]) -> Shape:
    """A polygon around a polyline, `widths[i]` wide at `centres[i]`."""
    points = np.stack(centres)
    tangents = np.gradient(points, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = np.stack([tangents[:, 1], -tangents[:, 0]], axis=1) * (np.array(widths)[:, None] / 2)
    return Shape(np.concatenate([points + normals, (points - normals)[::-1]]))


def _unit(vector: Vector) -> Vector:
    return vector / np.linalg.norm(vector)


def _leg(joints: dict[str, Vector], side: str, body: Body, role: str, far: bool) -> list[Part]:
    thigh = _capsule(joints[f"hip.{side}"], joints[f"knee.{side}"], body.thigh_width)
    shin = _capsule(joints[f"knee.{side}"], joints[f"ankle.{side}"], body.shin_width)
    shoe = _capsule(joints[f"heel.{side}"], joints[f"toe.{side}"], body.sole)
    return [
        Part(role, (thigh,), body.thigh_width, far),
        Part(role, (shin,), body.shin_width, far),
        Part("shoes", (shoe,), body.sole, far),
    ]


def _arm(joints: dict[str, Vector], side: str, body: Body, sleeves: str, far: bool) -> list[Part]:
    shoulder, elbow, wrist = (joints[f"{j}.{side}"] for j in ("shoulder", "elbow", "hand"))
    hand_end = wrist + _unit(wrist - elbow) * body.hand * 0.6
    sleeve = "top" if sleeves == "long" else "skin"
    parts = [
        Part(sleeve, (_capsule(shoulder, elbow, body.arm_width),), body.arm_width, far),
        Part(sleeve, (_capsule(elbow, wrist, body.forearm_width),), body.forearm_width, far),
        Part("skin", (_capsule(wrist, hand_end, body.hand * 0.72),), body.hand * 0.7, far),
    ]
    if sleeves == "short":  # over the upper half of a bare upper arm
        short = _capsule(shoulder, shoulder + (elbow - shoulder) * 0.5, body.arm_width * 1.12)
        parts.insert(1, Part("top", (short,), body.arm_width, far))
    return parts


def _torso(skeleton: Skeleton, body: Body, look: Look) -> list[Part]:
    """The hips in the bottom's colour (a dress's for a dress), then the top from `look.top_end` up."""
    pelvis, neck = skeleton.joints["pelvis"], skeleton.joints["neck"]
    up = neck - pelvis
    if skeleton.view == "front":
        stations = [(-0.04, body.hips), (0.42, body.waist), (0.75, body.shoulders * 0.94), (0.97, body.shoulders)]
    else:
        stations = [(-0.04, body.depth * 0.95), (0.42, body.depth * 0.82), (0.75, body.depth), (0.97, body.depth * 0.8)]
    at = [(pelvis + up * f, w) for f, w in stations]
    hips_role = "top" if look.clothing == "dress" else "bottom"
    waist_width = float(np.interp(0.44, [f for f, _ in stations], [w for _, w in stations]))
    lower = _tube([at[0][0], pelvis + up * 0.44], [at[0][1], waist_width])
    top_start = look.top_end if look.clothing != "dress" else -0.04
    start_width = float(np.interp(top_start, [f for f, _ in stations], [w for _, w in stations]))
    upper = _tube([pelvis + up * top_start, *(p for p, _ in at[1:])], [start_width, *(w for _, w in at[1:])])
    thickness = stations[-1][1]
    parts = [Part(hips_role, (lower,), thickness)]
    if look.clothing != "trousers":
        parts.append(_skirt(skeleton, body, look, pelvis + up * 0.42, _unit(up), waist_width))
    shapes: tuple[Shape, ...] = (upper,)
    if skeleton.view == "front":
        shapes += tuple(
            _capsule(skeleton.joints[f"shoulder.{s}"], skeleton.joints[f"shoulder.{s}"], body.arm_width * 1.25)
            for s in skeleton.sides
        )
    parts.append(Part("top", shapes, thickness))
    return parts


def _skirt(skeleton: Skeleton, body: Body, look: Look, waist: Vector, up: Vector, waist_width: float) -> Part:
    """The convex hull of the waist and a hem around each leg `look.hem` of a thigh down it."""
    from scipy.spatial import ConvexHull

    across = np.array([up[1], -up[0]])
    points = [waist + across * waist_width * 0.52, waist - across * waist_width * 0.52]
    # Over a sitting figure's lap the hem stops short of the knee; below it the hull would jut out forwards.
    length = min(look.hem, 0.9) if skeleton.pose == "sitting" else look.hem
    for side in skeleton.sides:
        hip, knee, ankle = (skeleton.joints[f"{j}.{side}"] for j in ("hip", "knee", "ankle"))
        if length <= 1:
            hem, direction = hip + (knee - hip) * length, _unit(knee - hip)
        else:
            hem, direction = knee + (ankle - knee) * (length - 1), _unit(ankle - knee)
        normal = np.array([direction[1], -direction[0]]) * (body.thigh_width / 2 + look.flare)
        points += [hem + normal, hem - normal]
    stacked = np.stack(points)
    role = "top" if look.clothing == "dress" else "bottom"
    return Part(role, (Shape(stacked[ConvexHull(stacked).vertices]),), body.hips)


def _head(skeleton: Skeleton, body: Body, look: Look) -> tuple[list[Part], list[Part]]:
    """(parts behind the body: long hair; parts of the head itself, back to front)."""
    centre, axis = skeleton.joints["head"], skeleton.head_axis
    face = np.array([axis[1], -axis[0]])  # profile: towards the front
    front = skeleton.view == "front"
    along, across = body.head / 2, body.head * (body.head_width if front else 0.9) / 2
    neck = _capsule(skeleton.joints["neck"] - axis * 0.01, centre, body.head * body.head_width * 0.42)
    eyes = (
        [centre - axis * along * 0.08 + face * across * s * 0.42 for s in (-1, 1)]
        if front
        else [centre - axis * along * 0.08 + face * across * 0.62]
    )
    head = [
        Part("skin", (neck,), body.head * 0.3),
        Part("skin", (Shape(_ellipse(centre, axis, along, across)),), across * 2, head=True),
        Part("eye", tuple(_capsule(e, e, body.head * 0.09) for e in eyes), 0.0, head=True),
    ]
    behind: list[Part] = []
    if look.hair == "bald":
        return behind, head
    crown = axis if front else _unit(axis * 0.75 - face * 0.66)
    cap = _ellipse(centre, axis, along * 1.1, across * 1.1)
    keep = (cap - centre) @ crown >= (0.18 if front else -0.12) * along
    first = int(np.argmax(keep & ~np.roll(keep, 1)))  # where the kept arc starts
    arc = np.roll(cap, -first, axis=0)[: int(keep.sum())]
    head.append(Part("hair", (Shape(arc),), across, head=True))
    if look.hair == "bun":
        head.append(
            Part(
                "hair",
                (_capsule(centre + crown * along * 1.05, centre + crown * along * 1.05, along * 0.6),),
                along * 0.5,
                head=True,
            )
        )
    elif look.hair == "long":
        shoulders = skeleton.joints["neck"] - axis * body.head * 0.55
        if front:
            fall = _tube([centre, shoulders], [across * 2.25, across * 2.1])
        else:
            fall = _tube([centre - face * across * 0.35, shoulders - face * across * 0.6], [across * 1.2, across * 0.9])
        behind.append(Part("hair", (fall,), across))
    return behind, head


def dress(skeleton: Skeleton, body: Body, look: Look) -> list[Part]:
    """The parts of the dressed figure, back to front."""
    legs = "bottom" if look.clothing == "trousers" else "skin"
    behind, head = _head(skeleton, body, look)
    torso = _torso(skeleton, body, look)
    joints = skeleton.joints
    if skeleton.view == "front":
        limbs = [p for s in skeleton.sides for p in _leg(joints, s, body, legs, far=False)]
        arms = [p for s in skeleton.sides for p in _arm(joints, s, body, look.sleeves, far=False)]
        return [*behind, *limbs, *torso, *arms, *head]
    return [
        *_arm(joints, "f", body, look.sleeves, far=True),
        *_leg(joints, "f", body, legs, far=True),
        *behind,
        *_leg(joints, "n", body, legs, far=False),
        *torso,
        *head,
        *_arm(joints, "n", body, look.sleeves, far=False),
    ]


def seat_parts(seat: Seat) -> list[Part]:
    """A stool, chair or box in profile, its feet on the floor (y = 0)."""
    leg, slab = 0.026, 0.034
    top = Shape(
        np.array(
            [
                [seat.back_x - 0.01, seat.top],
                [seat.front_x + 0.01, seat.top],
                [seat.front_x + 0.01, seat.top - slab],
                [seat.back_x - 0.01, seat.top - slab],
            ]
        )
    )
    if seat.kind == "box":
        box = Shape(
            np.array(
                [
                    [seat.back_x - 0.02, seat.top],
                    [seat.front_x, seat.top],
                    [seat.front_x, 0.0],
                    [seat.back_x - 0.02, 0.0],
                ]
            )
        )
        return [Part("seat", (box,), 0.12, figure=False)]
    legs = tuple(
        _capsule(np.array([x, seat.top - slab]), np.array([x + lean, leg / 2]), leg)
        for x, lean in ((seat.back_x + 0.015, -0.01), (seat.front_x - 0.015, 0.01))
    )
    parts = [Part("seat", legs, leg, figure=False), Part("seat", (top,), slab, figure=False)]
    if seat.kind == "chair":
        post = _capsule(
            np.array([seat.back_x, seat.top]), np.array([seat.back_x - 0.02, seat.top + seat.backrest]), 0.03
        )
        parts.insert(0, Part("seat", (post,), 0.03, figure=False))
    return parts
