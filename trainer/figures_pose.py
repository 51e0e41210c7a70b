"""Skeletons of the `builtin:figures` data set: a body's proportions and where its joints are in each pose.

Everything is in body units (a standing figure is about 1 tall), y up, the floor at y = 0, and the figure
facing +x in profile; `figures_dress` puts flesh and clothes on the joints and `figures_draw` frames,
mirrors and paints them. Angles of limbs are degrees from straight down, positive towards the front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]

POSES = ("standing", "sitting", "walking", "arms-raised", "lying")
# Profile views have a near ("n") and a far ("f") side; front views a left ("l", at -x) and a right side.
PROFILE_SIDES = ("n", "f")
FRONT_SIDES = ("l", "r")


@dataclass(frozen=True)
class Body:
    """Lengths and widths of one body, in body units."""

    head: float
    head_width: float  # across the face, as a share of `head`
    neck: float
    torso: float  # shoulder joint to hip joint
    thigh: float
    shin: float  # knee to ankle
    ankle: float  # ankle above the sole
    foot: float
    upper_arm: float
    forearm: float
    hand: float
    shoulders: float
    waist: float
    hips: float
    depth: float  # chest, front to back
    thigh_width: float
    shin_width: float
    arm_width: float
    forearm_width: float
    sole: float = 0.04  # thickness of a shoe


def sample_body(rng: np.random.Generator) -> Body:
    """A body of random build and proportions within an adult's range."""
    build = rng.uniform(0.85, 1.2)
    shoulders = rng.uniform(0.21, 0.27) * build**0.5
    thigh_width = rng.uniform(0.078, 0.095) * build
    arm_width = rng.uniform(0.054, 0.066) * build
    return Body(
        head=rng.uniform(0.12, 0.15),
        head_width=rng.uniform(0.76, 0.86),
        neck=rng.uniform(0.012, 0.03),
        torso=rng.uniform(0.29, 0.33),
        thigh=rng.uniform(0.225, 0.26),
        shin=rng.uniform(0.215, 0.245),
        ankle=0.045,
        foot=rng.uniform(0.12, 0.145),
        upper_arm=rng.uniform(0.165, 0.19),
        forearm=rng.uniform(0.135, 0.155),
        hand=rng.uniform(0.055, 0.07),
        shoulders=shoulders,
        waist=shoulders * rng.uniform(0.62, 0.85),
        hips=rng.uniform(0.17, 0.23) * build**0.5,
        depth=rng.uniform(0.12, 0.155) * build,
        thigh_width=thigh_width,
        shin_width=thigh_width * rng.uniform(0.66, 0.76),
        arm_width=arm_width,
        forearm_width=arm_width * rng.uniform(0.8, 0.9),
    )


@dataclass(frozen=True)
class Seat:
    """What a sitting figure sits on: its kind, the x range of its top, the top's height, a back's height."""

    kind: str  # "stool", "chair" or "box"
    back_x: float
    front_x: float
    top: float
    backrest: float  # height of a chair's back above the seat; 0 for the others


@dataclass
class Skeleton:
    """Joints of one posed figure; `view` says which sides the joint names carry."""

    pose: str
    view: str  # "front" or "profile"
    joints: dict[str, Vector]
    head_axis: Vector  # unit vector from the neck to the crown
    seat: Seat | None = None

    @property
    def sides(self) -> tuple[str, str]:
        """The two side suffixes of the joint names."""
        return PROFILE_SIDES if self.view == "profile" else FRONT_SIDES


def unit(angle: float) -> Vector:
    """Unit vector at `angle` degrees from straight down, positive towards +x."""
    radians = np.radians(angle)
    return np.array([np.sin(radians), -np.cos(radians)])


def _limb(
    start: Vector, first: float, first_length: float, second: float, second_length: float
) -> tuple[Vector, Vector]:
    """(middle joint, end joint) of a two-segment limb hanging from `start` at the given angles."""
    middle = start + first_length * unit(first)
    return middle, middle + second_length * unit(second)


def _trunk(joints: dict[str, Vector], body: Body, pelvis: Vector, lean: float, tilt: float, view: str) -> Vector:
    """Add pelvis, neck, head, shoulders and hips for a trunk leaning `lean` degrees forward; returns the head axis."""
    up = -unit(lean)  # lean > 0 tips the shoulders forward
    across = np.array([up[1], -up[0]])
    neck = pelvis + up * body.torso
    axis = -unit(lean + tilt)
    joints.update(pelvis=pelvis, neck=neck, head=neck + axis * (body.neck + body.head / 2))
    shoulder = neck - up * 0.03
    if view == "front":
        reach = body.shoulders / 2 - body.arm_width / 2
        hip = body.hips / 2 - body.thigh_width / 2
        for side, sign in (("l", -1.0), ("r", 1.0)):
            joints[f"shoulder.{side}"] = shoulder + sign * reach * across
            joints[f"hip.{side}"] = pelvis + sign * hip * across
    else:
        joints.update({"shoulder.n": shoulder, "shoulder.f": shoulder - 0.012 * across, "hip.n": pelvis})
        joints["hip.f"] = pelvis - 0.01 * across
    return axis


def _legs(joints: dict[str, Vector], body: Body, angles: dict[str, tuple[float, float]]) -> None:
    """Knees and ankles from (thigh, shin) angles per side."""
    for side, (thigh, shin) in angles.items():
        joints[f"knee.{side}"], joints[f"ankle.{side}"] = _limb(
            joints[f"hip.{side}"], thigh, body.thigh, shin, body.shin
        )


def _arms(joints: dict[str, Vector], body: Body, angles: dict[str, tuple[float, float]]) -> None:
    """Elbows and wrists from (upper arm, forearm) angles per side."""
    for side, (upper, fore) in angles.items():
        joints[f"elbow.{side}"], joints[f"hand.{side}"] = _limb(
            joints[f"shoulder.{side}"], upper, body.upper_arm, fore, body.forearm
        )


def _feet(joints: dict[str, Vector], body: Body, toes: dict[str, float | None]) -> None:
    """Heel and toe of each shoe: in profile along `toes[side]` degrees above forward, from the front short and
    outwards (None)."""
    for side, angle in toes.items():
        ankle = joints[f"ankle.{side}"]
        if angle is None:
            out = -1.0 if side == "l" else 1.0
            sole = ankle[1] - body.ankle + body.sole / 2
            joints[f"heel.{side}"] = np.array([ankle[0] - out * 0.005, sole])
            joints[f"toe.{side}"] = np.array([ankle[0] + out * 0.025, sole])
            continue
        forward = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        sole = np.array([forward[1], -forward[0]]) * (body.ankle - body.sole / 2)
        joints[f"heel.{side}"] = ankle + sole - 0.2 * body.foot * forward
        joints[f"toe.{side}"] = ankle + sole + 0.8 * body.foot * forward


def _standing_height(body: Body) -> float:
    return body.ankle + body.shin + body.thigh


def _front_legs(joints: dict[str, Vector], body: Body, spread: float, splay: float) -> None:
    """Both legs from the front, each `spread` degrees out from vertical, the shins `splay` of that."""
    _legs(joints, body, {"l": (-spread, -spread * splay), "r": (spread, spread * splay)})
    _feet(joints, body, {"l": None, "r": None})


def _standing(body: Body, rng: np.random.Generator) -> Skeleton:
    """Upright, legs straight and together; seen from the front (arms down or hands on hips) or the side."""
    joints: dict[str, Vector] = {}
    hips = np.array([0.0, _standing_height(body)])
    if rng.random() < 0.55:
        axis = _trunk(joints, body, hips, 0.0, rng.uniform(-6, 6), "front")
        _front_legs(joints, body, rng.uniform(0, 5), 0.6)
        if rng.random() < 0.25:  # hands on hips: elbows out, forearms back in to the waist
            _arms(joints, body, {"l": (-rng.uniform(35, 45), 55.0), "r": (rng.uniform(35, 45), -55.0)})
        else:
            out = rng.uniform(4, 12, size=2)
            bend = rng.uniform(-2, 6, size=2)
            _arms(joints, body, {"l": (-out[0], -out[0] + bend[0]), "r": (out[1], out[1] - bend[1])})
        front = Skeleton("standing", "front", joints, axis)
        _stand_on_floor(front, body)
        return front
    axis = _trunk(joints, body, hips, rng.uniform(-3, 3), rng.uniform(-6, 6), "profile")
    legs = rng.uniform(-4, 4, size=2)
    _legs(joints, body, {"n": (legs[0], legs[0] - 2), "f": (legs[1], legs[1] - 2)})
    _feet(joints, body, {"n": 0.0, "f": 0.0})
    arms = rng.uniform(-8, 6, size=2)
    bend = rng.uniform(0, 20, size=2)
    _arms(joints, body, {"n": (arms[0], arms[0] + bend[0]), "f": (arms[1], arms[1] + bend[1])})
    skeleton = Skeleton("standing", "profile", joints, axis)
    _stand_on_floor(skeleton, body)
    return skeleton


def _arms_raised(body: Body, rng: np.random.Generator) -> Skeleton:
    """From the front, both hands well above the head (a V, straight up, or elbows bent), legs apart or not."""
    joints: dict[str, Vector] = {}
    axis = _trunk(joints, body, np.array([0.0, _standing_height(body)]), 0.0, rng.uniform(-8, 8), "front")
    _front_legs(joints, body, rng.uniform(0, 4) if rng.random() < 0.6 else rng.uniform(8, 16), 1.0)
    arms = {}
    for side, sign in (("l", -1.0), ("r", 1.0)):
        upper = 180 - rng.uniform(8, 38)  # from straight up, outwards
        arms[side] = (sign * upper, sign * (upper + rng.uniform(-12, 14)))
    _arms(joints, body, arms)
    skeleton = Skeleton("arms-raised", "front", joints, axis)
    _stand_on_floor(skeleton, body)
    return skeleton


def _walking(body: Body, rng: np.random.Generator) -> Skeleton:
    """In profile mid-stride: legs apart, the trailing knee bent, arms swinging against the legs."""
    joints: dict[str, Vector] = {}
    axis = _trunk(joints, body, np.zeros(2), rng.uniform(0, 7), rng.uniform(-4, 6), "profile")
    stride = rng.uniform(22, 32)
    lead, trail = ("n", "f") if rng.random() < 0.5 else ("f", "n")
    trailing = -stride * rng.uniform(0.75, 0.95)
    _legs(joints, body, {lead: (stride, stride - rng.uniform(0, 6)), trail: (trailing, trailing - rng.uniform(12, 30))})
    # The lead heel strikes with its toes up; the trailing foot pushes off with its toes down.
    _feet(joints, body, {lead: rng.uniform(5, 15), trail: -rng.uniform(15, 35)})
    swing = rng.uniform(18, 34)
    back = -rng.uniform(16, 30)
    _arms(joints, body, {trail: (swing, swing + rng.uniform(15, 40)), lead: (back, back + rng.uniform(0, 15))})
    skeleton = Skeleton("walking", "profile", joints, axis)
    _stand_on_floor(skeleton, body)
    return skeleton


def _stand_on_floor(skeleton: Skeleton, body: Body) -> None:
    """Shift the joints up or down so that the lowest shoe touches the floor."""
    lowest = min(skeleton.joints[f"{end}.{s}"][1] for s in skeleton.sides for end in ("heel", "toe"))
    lift = np.array([0.0, body.sole / 2 - lowest])
    # New arrays, not in place: several joints may start as the same array (the pelvis and a hip).
    skeleton.joints.update({name: joint + lift for name, joint in skeleton.joints.items()})


def _sitting(body: Body, rng: np.random.Generator) -> Skeleton:
    """In profile on a stool, chair or box: thighs about level, shins down to the floor, hands on the lap."""
    joints: dict[str, Vector] = {}
    ankle = np.array([0.0, body.ankle])
    knee = ankle - body.shin * unit(rng.uniform(-12, 16))
    rise = np.radians(rng.uniform(-8, 6))
    hip = knee - body.thigh * np.array([np.cos(rise), np.sin(rise)])
    kind = str(rng.choice(["stool", "chair", "box"]))
    lean = rng.uniform(-4, 6) if kind == "chair" else rng.uniform(-10, 8)
    axis = _trunk(joints, body, hip, lean, rng.uniform(-6, 6), "profile")
    step = rng.uniform(-0.04, 0.04)
    for side, offset in (("n", 0.0), ("f", step)):
        joints[f"hip.{side}"] = hip + np.array([offset * 0.2, 0.0])
        joints[f"knee.{side}"] = knee + np.array([offset * 0.5, 0.0])
        joints[f"ankle.{side}"] = ankle + np.array([offset, 0.0])
    _feet(joints, body, {"n": 0.0, "f": 0.0})
    # Forearms slope down from the elbows so the hands rest on the thighs.
    _arms(joints, body, {s: (rng.uniform(0, 25), rng.uniform(48, 68)) for s in ("n", "f")})
    seat = Seat(
        kind=kind,
        back_x=hip[0] - body.depth * rng.uniform(0.5, 0.9),
        front_x=hip[0] + body.thigh * rng.uniform(0.35, 0.65),
        top=hip[1] - body.thigh_width * 0.45,
        backrest=rng.uniform(0.3, 0.42) if kind == "chair" else 0.0,
    )
    return Skeleton("sitting", "profile", joints, axis, seat=seat)


def _lying(body: Body, rng: np.random.Generator) -> Skeleton:
    """On the back on the floor, head to the left: built upright facing +x, then turned a quarter."""
    joints: dict[str, Vector] = {}
    axis = _trunk(joints, body, np.array([0.0, _standing_height(body)]), 0.0, rng.uniform(-8, 4), "profile")
    legs = rng.uniform(-3, 3, size=2)
    _legs(joints, body, {"n": (legs[0], legs[0]), "f": (legs[1], legs[1])})
    toes: dict[str, float | None] = {"n": rng.uniform(-5, 10), "f": rng.uniform(-5, 10)}
    if rng.random() < 0.35:  # one knee up, its sole flat on the floor (the floor is at -x until the turn)
        hip = joints["hip.n"]
        knee = hip + body.thigh * unit(rng.uniform(38, 55))
        floor = hip[0] - body.depth / 2 + body.ankle
        reach = float(np.clip((knee[0] - floor) / body.shin, -1.0, 1.0))
        joints["knee.n"], joints["ankle.n"] = knee, knee + body.shin * unit(-np.degrees(np.arcsin(reach)))
        toes["n"] = -90.0
    _feet(joints, body, toes)
    arms = {"n": (rng.uniform(-4, 8), rng.uniform(-4, 12)), "f": (rng.uniform(-6, 6), rng.uniform(-6, 10))}
    style = rng.choice(["along", "belly", "head"])
    if style == "belly":
        # The hand must end inside the torso's outline, so the forearm points mostly towards the feet.
        arms["n"] = (-rng.uniform(15, 25), rng.uniform(22, 34))
    elif style == "head":  # the far hand tucked behind the head, its elbow up
        arms["f"] = (rng.uniform(145, 160), -rng.uniform(65, 85))
    _arms(joints, body, arms)
    # A quarter turn counter-clockwise: the crown points to -x, the front (the face) up.
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])
    for name, joint in joints.items():
        joints[name] = turn @ joint
    return Skeleton("lying", "profile", joints, turn @ axis)


_BUILDERS = {
    "standing": _standing,
    "sitting": _sitting,
    "walking": _walking,
    "arms-raised": _arms_raised,
    "lying": _lying,
}


def pose_skeleton(pose: str, body: Body, rng: np.random.Generator) -> Skeleton:
    """The joints of `body` in `pose` (one of POSES), with random variations of that pose."""
    return _BUILDERS[pose](body, rng)
