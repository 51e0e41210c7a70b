"""What the Dockerfile copies, installs and runs exists in the project, and how it builds its images.

scripts/test-images builds and runs both targets where a container engine can (CI); these tests need
none: a renamed extra, sub-command or folder fails here, not at `docker build` time on someone's laptop,
and the shape of the build (digest-pinned base, locked versions, a venv copied alone into each target,
OCI labels) is checked on every test run."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from argomlops.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    """One FROM ... AS name block: its base image and its instructions as (KEYWORD, arguments)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """The arguments of every instruction with this keyword, in order."""
        return [rest for key, rest in self.instructions if key == keyword]


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Parse a Dockerfile into its stages, joining continued lines and dropping comments.

    ARGs before the first FROM (the global build arguments) are the stage named "" (its `args("ARG")`);
    a stage's base is written as in the file (`${BASE_IMAGE}`), `resolve_base` fills in the default.
    """
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    current: Stage | None = Stage(name="", base="")
    stages: dict[str, Stage] = {"": current}
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", rest.strip(), re.IGNORECASE)
            assert match, f"every stage needs a name: FROM {rest}"
            current = Stage(name=match.group(2), base=match.group(1))
            stages[current.name] = current
        else:
            assert current is not None
            assert current.name or keyword == "ARG", f"{keyword} before the first FROM"
            current.instructions.append((keyword, rest.strip()))
    return stages


def arg_defaults(stage: Stage) -> dict[str, str]:
    """The default of each `ARG NAME=default` of a stage (quotes removed)."""
    defaults = {}
    for argument in stage.args("ARG"):
        name, sep, default = argument.partition("=")
        if sep:
            defaults[name.strip()] = default.strip().strip('"')
    return defaults


def resolve_base(stages: dict[str, Stage], stage: Stage) -> str:
    """A stage's base image with the global build arguments' defaults filled in."""
    defaults = arg_defaults(stages[""])
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m.group(1) or m.group(2)], stage.base)


def venv_stage(stages: dict[str, Stage], target: str) -> Stage:
    """The stage a target copies its virtual environment from (`COPY --from=<stage> /opt/argomlops ...`)."""
    sources = [
        re.match(r"--from=(\S+)", argument).group(1)  # type: ignore[union-attr]
        for argument in stages[target].args("COPY")
        if argument.startswith("--from=")
    ]
    assert len(sources) == 1, f"{target}: copies from {sources}, expected its venv stage only"
    return stages[sources[0]]


def exec_form(argument: str) -> list[str]:
    """The list of an exec-form ENTRYPOINT/CMD (a JSON array); shell form is refused."""
    assert argument.startswith("["), f"use exec form so signals reach the process: {argument}"
    parsed = re.findall(r'"((?:[^"\\]|\\.)*)"', argument)
    return parsed


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def installed_extras(stage: Stage) -> set[str]:
    """The extras of the argomlops wheel a stage's `pip install` lines ask for."""
    extras: set[str] = set()
    for command in stage.args("RUN"):
        for found in re.findall(r"argomlops-\*\.whl\)\[([a-z0-9_,-]+)\]", command):
            extras.update(found.split(","))
        for found in re.findall(r"(?:^|\s)\"?\.\[([a-z0-9_,-]+)\]", command):
            extras.update(found.split(","))
    return extras


def test_both_targets_exist(stages: dict[str, Stage]) -> None:
    assert {"operator", "trainer"} <= set(stages)


def test_base_image_is_a_build_argument_pinned_by_digest(stages: dict[str, Stage]) -> None:
    default = arg_defaults(stages[""])["BASE_IMAGE"]
    assert re.fullmatch(r"docker\.io/library/python:3\.11-slim@sha256:[0-9a-f]{64}", default), default
    for stage in stages.values():
        if stage.name:
            assert stage.base == "${BASE_IMAGE}", f"{stage.name}: FROM {stage.base}, not the BASE_IMAGE argument"


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_targets_hold_only_their_venv_from_the_build(stages: dict[str, Stage], target: str) -> None:
    """Nothing of the build stages (pip's caches, the wheels, the constraints) reaches a final image."""
    copies = stages[target].args("COPY")
    assert copies == [f"--from={venv_stage(stages, target).name} /opt/argomlops /opt/argomlops"]
    assert not any("pip" in command for command in stages[target].args("RUN")), f"{target} installs by itself"
    assert "PATH=/opt/argomlops/bin:" in " ".join(stages[target].args("ENV"))


def test_every_install_is_locked_and_binary(stages: dict[str, Stage]) -> None:
    installs = [c for stage in stages.values() for c in stage.args("RUN") if re.search(r"pip\b.* install", c)]
    assert len(installs) == 2
    for command in installs:
        assert "-c /constraints.txt" in command and "--only-binary=:all:" in command, command
        assert "--python /opt/argomlops/bin/python" in command and "venv --without-pip /opt/argomlops" in command
    assert "PIP_CONSTRAINT=/constraints.txt" in " ".join(stages["wheel"].args("ENV"))


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_oci_labels(stages: dict[str, Stage], target: str, pyproject: dict) -> None:
    labels = " ".join(stages[target].args("LABEL"))
    for key, value in (("source", "${SOURCE}"), ("version", "${VERSION}"), ("revision", "${REVISION}")):
        assert f'org.opencontainers.image.{key}="{value}"' in labels, key
    defaults = arg_defaults(stages[target])
    assert defaults["VERSION"] == pyproject["project"]["version"]
    assert defaults["SOURCE"].startswith("https://") and "REVISION" in defaults


@pytest.mark.parametrize("target", ["operator", "trainer"])
def test_targets_run_as_non_root(stages: dict[str, Stage], target: str) -> None:
    users = stages[target].args("USER")
    assert users, f"{target}: no USER instruction, the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{target} runs as {user}"
    # A numeric uid lets Kubernetes' runAsNonRoot check the image without resolving names.
    assert user.isdigit(), f"{target}: USER {user} should be numeric for runAsNonRoot"
    useradd = " ".join(stages[target].args("RUN"))
    assert f"--uid {user}" in useradd, f"{target}: uid {user} is never created"


def test_extras_exist_in_pyproject(stages: dict[str, Stage], pyproject: dict) -> None:
    extras = set(pyproject["project"]["optional-dependencies"])
    assert installed_extras(venv_stage(stages, "operator")) == {"operator"}
    assert installed_extras(venv_stage(stages, "trainer")) == {"trainer"}
    for target in ("operator", "trainer"):
        assert installed_extras(venv_stage(stages, target)) <= extras


def test_operator_target_has_no_tensorflow(stages: dict[str, Stage], pyproject: dict) -> None:
    operator = venv_stage(stages, "operator")
    commands = " ".join(operator.args("RUN") + operator.args("ARG"))
    assert "tensorflow" not in commands.lower()
    assert "trainer" not in installed_extras(operator)
    # The operator extra itself must not pull TensorFlow in either.
    deps = " ".join(pyproject["project"]["optional-dependencies"]["operator"]).lower()
    assert "tensorflow" not in deps and "keras" not in deps


def test_trainer_gets_cuda_tensorflow_matching_the_extra(stages: dict[str, Stage], pyproject: dict) -> None:
    build = venv_stage(stages, "trainer")
    assert '"${TENSORFLOW}"' in " ".join(build.args("RUN"))
    pinned = re.fullmatch(r"tensorflow\[and-cuda\]==([0-9.*]+)", arg_defaults(build)["TENSORFLOW"])
    assert pinned, "the trainer image needs TensorFlow's and-cuda extra for the GPU by default"
    trainer_deps = pyproject["project"]["optional-dependencies"]["trainer"]
    assert f"tensorflow=={pinned.group(1)}" in trainer_deps, "the image's TensorFlow differs from the extra's"


def test_entry_points_exist(stages: dict[str, Stage], pyproject: dict) -> None:
    scripts = pyproject["project"]["scripts"]
    parser = build_parser()
    sub_commands = next(a for a in parser._actions if a.dest == "command").choices
    assert sub_commands is not None
    operator_entry = exec_form(stages["operator"].args("ENTRYPOINT")[-1])
    assert operator_entry[0] in scripts
    assert operator_entry[1:] == ["operator"] and "operator" in sub_commands
    trainer_entry = exec_form(stages["trainer"].args("ENTRYPOINT")[-1])
    assert trainer_entry == ["argomlops"] and "argomlops" in scripts
    assert {"train", "generate"} <= set(sub_commands)
    assert parser.parse_args(["train", "--config", "/etc/argomlops/run.yaml", "--run-id", "x"]).command == "train"


def test_copied_paths_exist_and_reach_the_build_context(stages: dict[str, Stage]) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = 0
    for stage in stages.values():
        for argument in stage.args("COPY"):
            words = shlex.split(argument)
            if any(word.startswith("--from=") for word in words):
                continue
            sources = [word for word in words[:-1] if not word.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
                hit = [p for p in ignored if fnmatch.fnmatch(source, p.rstrip("/"))]
                assert not hit, f"COPY {source} is excluded by .dockerignore pattern {hit}"
                copied += 1
    assert copied >= 5


def test_dockerignore_keeps_heavy_folders_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "runs"} <= ignored


def test_wheel_stage_copies_every_package_folder(stages: dict[str, Stage], pyproject: dict) -> None:
    """argomlops/trainer etc. are symlinks: the wheel stage needs the folders they point to as well."""
    copied = {word for arg in stages["wheel"].args("COPY") for word in shlex.split(arg)[:-1]}
    folders = set()
    for package in pyproject["tool"]["setuptools"]["packages"]:
        real = (ROOT / package.replace(".", "/")).resolve().relative_to(ROOT)
        folders.add(real.parts[0])
    assert folders <= copied, f"the wheel would miss {sorted(folders - copied)}"
    assert pyproject["project"]["readme"] in " ".join(stages["wheel"].args("COPY"))


def test_the_wheel_holds_every_module_under_its_import_path(stages: dict[str, Stage], tmp_path: Path) -> None:
    """What the Dockerfile's wheel stage does, on what it copies: the symlinked folders become real files."""
    source = tmp_path / "src"
    source.mkdir()
    for arg in stages["wheel"].args("COPY"):
        *paths, _target = shlex.split(arg)
        for path in paths:
            origin = ROOT / path
            if origin.is_dir():
                shutil.copytree(origin, source / path, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, source / path)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("argomlops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for module in ("config/run.py", "trainer/stage.py", "operator/handlers.py", "workflows/argomlops-train.yaml"):
        assert f"argomlops/{module}" in names, module
    assert not any(name.startswith(("trainer/", "operator/", "workflows/", "tests/")) for name in names)


def test_images_run_as_the_uids_kubernetes_runs_them_as(stages: dict[str, Stage]) -> None:
    """The pods force a uid (runAsUser); the image's user must be that uid, or HOME is not theirs."""
    import helm_python as helm

    with helm.Chart.load(ROOT / "charts" / "argomlops") as chart:
        rendered = chart.render({}, name="argomlops", namespace="argomlops")
    deployment = yaml.safe_load(rendered["argomlops/templates/operator-deployment.yaml"])
    operator_uid = stages["operator"].args("USER")[-1].split(":")[0]
    assert str(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == operator_uid

    template = yaml.safe_load((ROOT / "workflows" / "argomlops-train.yaml").read_text())
    trainer_uid = stages["trainer"].args("USER")[-1].split(":")[0]
    assert str(template["spec"]["securityContext"]["runAsUser"]) == trainer_uid


def test_operator_image_needs_nothing_from_the_trainer_extra() -> None:
    """The operator target installs only the operator extra: its code must import with the trainer's
    packages (TensorFlow, numpy, Pillow, GCS client, scikit-image) made unimportable."""
    blocked = ["tensorflow", "keras", "numpy", "PIL", "skimage", "google.cloud", "tensorboard"]
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"the operator image has no {{name}}")
sys.meta_path.insert(0, Block())
import argomlops.cli, argomlops.operator.main, argomlops.operator.handlers
argomlops.cli.main(["operator", "--help"])  # prints the operator's options, exits 0
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--liveness" in result.stdout and "--standalone" in result.stdout
