"""constraints.txt, the versions both images install: it pins every dependency, consistently.

`bash scripts/lock` writes it (pip's resolver against PyPI, for the images' CPython 3.11 on x86-64);
`bash scripts/lock --check` says whether it still resolves to itself. These tests need no network:
every requirement of pyproject.toml's base, operator and trainer dependencies (and TensorFlow's and-cuda
extra, which the trainer image installs) is pinned at a version it allows, and so is every requirement
of each pinned package whose metadata this environment has at that very version.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
IMAGE_EXTRAS = ("operator", "trainer")
# The interpreter the images run (scripts/lock resolves for it), whatever runs the tests.
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def pins() -> dict[str, Version]:
    """constraints.txt as {canonical name: version}; every line `name==version`."""
    found: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z0-9-]+)==([^\s;]+)", line)
        assert match, f"constraints.txt: {line!r} is not name==version"
        assert match[1] not in found, f"constraints.txt pins {match[1]} twice"
        found[match[1]] = Version(match[2])
    return found


def applies(requirement: Requirement, extras: tuple[str, ...] = ("",)) -> bool:
    """Whether a requirement holds in the images' environment with these extras asked for."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra}) for extra in extras)


def image_requirements() -> list[Requirement]:
    """What the images ask pip for: the base dependencies, the two extras, TensorFlow with and-cuda."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    written = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        written += project["optional-dependencies"][extra]
    dockerfile = (ROOT / "Dockerfile").read_text()
    tensorflow = re.search(r'ARG TENSORFLOW="([^"]+)"', dockerfile)
    assert tensorflow, "the Dockerfile's TENSORFLOW build argument has no default"
    return [Requirement(text) for text in [*written, tensorflow[1]]]


def test_constraints_are_sorted_names_with_exact_versions() -> None:
    names = list(pins())
    assert names == sorted(names) and len(names) > 50
    assert "argomlops" not in names  # the project itself comes from its wheel
    header = (ROOT / "constraints.txt").read_text().splitlines()[:3]
    assert any("bash scripts/lock" in line for line in header)


def test_every_image_dependency_is_pinned_at_an_allowed_version() -> None:
    pinned = pins()
    for requirement in image_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in constraints.txt: run bash scripts/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} vs {requirement}"
        )


def test_pinned_packages_requirements_are_pinned_too() -> None:
    """The closure, where this environment can tell: each pinned package installed here at its pinned version."""
    pinned = pins()
    asked = {canonicalize_name(r.name): tuple(r.extras) or ("",) for r in image_requirements()}
    checked = 0
    for name, version in pinned.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Version(distribution.version) != version:
            continue
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if not applies(requirement, asked.get(name, ("",))):
                continue
            wanted = canonicalize_name(requirement.name)
            assert wanted in pinned, f"{name}=={version} needs {requirement}, which constraints.txt lacks"
            assert requirement.specifier.contains(pinned[wanted], prereleases=True), f"{name} needs {requirement}"
        checked += 1
    assert checked > 30, f"only {checked} pinned packages have their metadata here: nothing much was checked"
