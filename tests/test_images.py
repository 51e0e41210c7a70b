"""The built images, run: what only a container shows (scripts/test-images builds them and runs this).

Skipped unless `OPERATOR_IMAGE_UNDER_TEST` / `TRAINER_IMAGE_UNDER_TEST` name built images (and
`CONTAINER_ENGINE`, default podman, can run them). The operator image's behaviour against the test API
server is tests/test_operator_cli.py, run with `$ARGOMLOPS_OPERATOR_COMMAND` (tests/operator_process.py);
here: what the image is (its user, its labels, no TensorFlow, exactly the locked versions).

The trainer runs as the argomlops-train WorkflowTemplate runs it (`pod_options`): as uid 1000 without
capabilities or privilege escalation, on a read-only root filesystem with the template's emptyDirs
and environment, its ConfigMap mounted read-only; on the host network, where the GCS emulator is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from executables import executable

ROOT = Path(__file__).resolve().parents[1]
ENGINE = os.environ.get("CONTAINER_ENGINE", "podman")
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE_UNDER_TEST", "")
TRAINER_IMAGE = os.environ.get("TRAINER_IMAGE_UNDER_TEST", "")
UID = 1000
# The README's demo, reduced: two short epochs a stage, a judge of 8 images.
TINY = [
    "training.vqvae.epochs=2",
    "training.vqvae.stepsPerEpoch=10",
    "training.pixelcnn.epochs=2",
    "training.pixelcnn.stepsPerEpoch=10",
    "training.pixelcnn.evaluateCount=8",
]
needs_operator = pytest.mark.skipif(not OPERATOR_IMAGE, reason="no OPERATOR_IMAGE_UNDER_TEST (scripts/test-images)")
needs_trainer = pytest.mark.skipif(not TRAINER_IMAGE, reason="no TRAINER_IMAGE_UNDER_TEST (scripts/test-images)")


def engine(*args: str, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the container engine; its output as text."""
    return subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=check)


def in_image(image: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in an image as its own user (the entry point replaced)."""
    return engine("run", "--rm", "--network=none", "--entrypoint", "python", image, "-c", code, timeout=300)


def locked() -> dict[str, str]:
    """constraints.txt as {normalized name: version}."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    return pins


INSTALLED = (
    "import importlib.metadata as m, json, re\n"
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version for d in m.distributions()}))"
)


def _labels(image: str) -> dict[str, str]:
    inspected = json.loads(engine("image", "inspect", image, check=True).stdout)
    labels: dict[str, str] = inspected[0]["Config"]["Labels"] or {}
    return labels


# --- what each image is -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["operator", "trainer"])
def test_image_user_labels_and_locked_versions(which: str) -> None:
    image = OPERATOR_IMAGE if which == "operator" else TRAINER_IMAGE
    if not image:
        pytest.skip(f"no {which.upper()}_IMAGE_UNDER_TEST (scripts/test-images)")
    who = in_image(image, "import os, sys; print(os.getuid(), os.getgid(), sys.prefix)")
    assert who.returncode == 0, who.stderr
    assert who.stdout.split() == [str(UID), str(UID), "/opt/argomlops"]  # non-root, in the venv
    labels = _labels(image)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.revision"] == os.environ.get("IMAGE_REVISION", revision)
    assert labels["org.opencontainers.image.source"].startswith("https://")
    installed = json.loads(in_image(image, INSTALLED).stdout)
    pins = locked()
    unpinned = {name: version for name, version in installed.items() if name != "argomlops" and name not in pins}
    assert not unpinned, f"installed but not in constraints.txt: {unpinned}"
    differ = {
        name: (version, pins[name]) for name, version in installed.items() if name in pins and pins[name] != version
    }
    assert not differ, f"installed at other versions than constraints.txt: {differ}"
    # Nothing of the build: no wheels, no pip in the venv, no compiler.
    leftovers = in_image(
        image,
        "import os, shutil; print([p for p in ('/wheels', '/constraints.txt', '/src', '/opt/argomlops/bin/pip')"
        " if os.path.exists(p)], [c for c in ('gcc', 'cc', 'make') if shutil.which(c)])",
    )
    assert leftovers.stdout.split() == ["[]", "[]"], leftovers.stdout


@needs_operator
def test_operator_image_has_no_tensorflow() -> None:
    done = in_image(OPERATOR_IMAGE, "import tensorflow")
    assert done.returncode == 1 and "No module named 'tensorflow'" in done.stderr
    assert "hera" in in_image(OPERATOR_IMAGE, "import hera, kopf; print('hera')").stdout


# --- the trainer as the WorkflowTemplate runs it ------------------------------------------------------


def pod_options(scratch: Path, template_name: str = "train") -> list[str]:
    """`podman run` options that give a container what the argomlops-train template gives its pod.

    Each emptyDir is a fresh folder under `scratch`, mode 0777 as the kubelet makes an emptyDir (a tmpfs
    of this podman version keeps its mount point root's 0755 whatever mode it is given).
    """
    template = yaml.safe_load((ROOT / "workflows" / "argomlops-train.yaml").read_text())
    leaf = next(t for t in template["spec"]["templates"] if t["name"] == template_name)
    container = leaf["container"]
    security = {**template["spec"]["securityContext"], **container["securityContext"]}
    options = [f"--user={security['runAsUser']}:{security['runAsGroup']}", "--network=host"]
    assert security["capabilities"] == {"drop": ["ALL"]} and security["allowPrivilegeEscalation"] is False
    options += ["--cap-drop=ALL", "--security-opt=no-new-privileges"]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    volumes = {volume["name"]: volume for volume in leaf["volumes"]}
    for mount in container["volumeMounts"]:
        if "emptyDir" in volumes[mount["name"]]:
            empty = scratch / mount["name"]
            empty.mkdir(parents=True)
            empty.chmod(0o777)
            options.append(f"--volume={empty}:{mount['mountPath']}")
    options += [f"--env={e['name']}={e['value']}" for e in container["env"] if "{{" not in e["value"]]
    return options


def run_trainer(*args: str, mounts: dict[Path, str], env: dict[str, str] | None = None, detach: str = "") -> Any:
    """Run the trainer image with the pod's options, these host folders mounted and this environment."""
    options = pod_options(Path(tempfile.mkdtemp(prefix="pod-")))
    for host, inside in mounts.items():
        options.append(f"--volume={host}:{inside}")
    options += [f"--env={key}={value}" for key, value in (env or {}).items()]
    if detach:
        return engine("run", "-d", f"--name={detach}", *options, TRAINER_IMAGE, *args, check=True)
    return engine("run", "--rm", *options, TRAINER_IMAGE, *args, timeout=1200)


def writable(path: Path) -> Path:
    """A host folder the container's uid may write to (what fsGroup does for a pod's volume)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    return path


def _owners(folder: Path) -> set[int]:
    return {path.stat().st_uid for path in [folder, *folder.rglob("*")]}


def _complete(run: Path) -> None:
    """The run layout of DESIGN.md, both stages done."""
    for name in ("run.yaml", "provenance.json", "latest.json", "evaluation.json", "report.html", "code"):
        assert (run / name).exists(), name
    for stage, pictures in (("vqvae", "reconstructions"), ("pixelcnn", "samples")):
        for name in ("model.keras", "metrics.jsonl", "checkpoints", "tensorboard", pictures):
            assert (run / stage / name).exists(), f"{stage}/{name}"
        assert list((run / stage / pictures).glob("epoch-*.png")), f"{stage}/{pictures} is empty"
    assert (run / "pixelcnn" / "codes").is_dir()
    latest = json.loads((run / "latest.json").read_text())
    assert all(latest["stages"][stage]["done"] for stage in ("vqvae", "pixelcnn")), latest
    assert json.loads((run / "provenance.json").read_text())["last_exit"]["code"] == 0


@needs_trainer
def test_trainer_demo_then_generate_into_mounted_folders(tmp_path: Path) -> None:
    runs, out = writable(tmp_path / "runs"), writable(tmp_path / "out")
    examples = {ROOT / "examples": "/examples:ro", runs: "/runs", out: "/out"}
    sets = [word for item in TINY for word in ("--set", item)]
    trained = run_trainer("train", "/examples/quickstart.yaml", "--artifacts", "/runs", *sets, mounts=examples)
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run,) = runs.iterdir()
    _complete(run)
    generated = run_trainer("generate", "--run", f"/runs/{run.name}", "--count", "4", "--out", "/out", mounts=examples)
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", *(f"sample-{i:04d}.png" for i in range(4))]
    assert _owners(runs) == _owners(out) == {UID}
    assert "\x1b[" not in trained.stdout + trained.stderr  # plain lines in a pod's log
    # The host's tools read what the image wrote.
    table = subprocess.run([executable("argomlops"), "runs", str(runs), "--json"], capture_output=True, text=True)
    assert [row["state"] for row in json.loads(table.stdout)] == ["done"], table.stdout


def _resolved_tiny_quickstart() -> str:
    """examples/quickstart.yaml with the TINY overrides written in, as the per-run ConfigMap holds a config."""
    quickstart = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    for item in TINY:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = quickstart
        for part in parents:
            node = node[part]
        node[leaf] = int(value)
    return yaml.safe_dump(quickstart)


@needs_trainer
def test_trainer_stages_to_the_gcs_emulator_as_the_template_runs_them(
    tmp_path: Path, gcs_bucket: str, gcs_emulator: str
) -> None:
    from argomlops.trainer.gcs_client import gcs_client  # the host's client, on the same emulator

    env = {"STORAGE_EMULATOR_HOST": gcs_emulator, "GOOGLE_CLOUD_PROJECT": "argomlops-test"}
    config = writable(tmp_path / "config")
    (config / "run.yaml").write_text(_resolved_tiny_quickstart())
    run_id, artifacts = "2026-12-01_10h00m00s", f"gs://{gcs_bucket}/runs"
    for stage in ("vqvae", "pixelcnn"):  # the DAG's two tasks, with the template's own argv
        argv = ["train", "--config", "/etc/argomlops/run.yaml", "--run-id", run_id, "--stage", stage]
        done = run_trainer(*argv, "--artifacts", artifacts, mounts={config: "/etc/argomlops:ro"}, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    run, out = f"{artifacts}/{run_id}", f"{artifacts}/{run_id}/generated"
    generated = run_trainer("generate", "--run", run, "--count", "2", "--out", out, mounts={}, env=env)
    assert generated.returncode == 0, generated.stderr[-3000:]
    names = {blob.name for blob in gcs_client().list_blobs(gcs_bucket, prefix=f"runs/{run_id}/")}
    for key in ("run.yaml", "latest.json", "report.html", "vqvae/model.keras", "pixelcnn/model.keras"):
        assert f"runs/{run_id}/{key}" in names, key
    assert {f"runs/{run_id}/generated/{n}" for n in ("grid.png", "sample-0000.png", "sample-0001.png")} <= names
    assert any(re.match(rf"runs/{run_id}/pixelcnn/samples/epoch-\d+\.png$", n) for n in names)


@needs_trainer
def test_trainer_sigterm_exits_143_after_a_checkpoint(tmp_path: Path) -> None:
    runs = writable(tmp_path / "runs")
    name = f"argomlops-sigterm-{os.getpid()}"
    sets = ["training.vqvae.epochs=50", "training.vqvae.stepsPerEpoch=20", "training.vqvae.checkpointEvery=1000"]
    argv = ["train", "/examples/quickstart.yaml", "--artifacts", "/runs", "--stage", "vqvae"]
    argv += [word for item in sets for word in ("--set", item)]
    run_trainer(*argv, mounts={ROOT / "examples": "/examples:ro", runs: "/runs"}, detach=name)
    try:
        deadline = time.monotonic() + 300
        while "vqvae epoch 1/" not in engine("logs", name).stdout + engine("logs", name).stderr:
            assert time.monotonic() < deadline, engine("logs", name).stderr[-3000:]
            time.sleep(1)
        # What the kubelet does at a spot preemption: SIGTERM, then SIGKILL after the grace period.
        engine("stop", "--time=60", name, check=True, timeout=120)
        code = engine("inspect", name, "--format", "{{.State.ExitCode}}", check=True).stdout.strip()
        logs = engine("logs", name)
    finally:
        engine("rm", "-f", name)
    assert code == "143", logs.stderr[-3000:]
    (run,) = runs.iterdir()
    latest = json.loads((run / "latest.json").read_text())
    checkpoint = latest["stages"]["vqvae"]
    assert not checkpoint["done"] and (run / checkpoint["checkpoint"] / "state.json").exists()
    assert json.loads((run / "provenance.json").read_text())["last_exit"]["code"] == 143
    assert _owners(runs) == {UID}


@needs_trainer
def test_a_missing_config_is_the_hosts_one_line_and_exit_2(tmp_path: Path) -> None:
    """An empty folder where the ConfigMap should be: the same error line as on the host, exit 2."""
    argv = ["train", "--config", "/etc/argomlops/run.yaml", "--run-id", "2026-12-01_10h00m00s"]
    assert not Path("/etc/argomlops/run.yaml").exists()
    host = subprocess.run([executable("argomlops"), *argv], capture_output=True, text=True, timeout=300)
    image = run_trainer(*argv, mounts={writable(tmp_path / "config"): "/etc/argomlops:ro"})
    assert host.returncode == image.returncode == 2
    assert image.stderr.strip() == host.stderr.strip() and len(host.stderr.strip().splitlines()) == 1, image.stderr
