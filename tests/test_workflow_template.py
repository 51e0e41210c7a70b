"""The `argomlops-train` WorkflowTemplate: golden file, Argo schema, and what each part of it does.

No Argo controller runs here. Where the template relies on Argo substituting parameters (`{{...}}`) or
evaluating `when` conditions, the tests render those strings with tests/argo_expr.py, which implements
the subset the template uses and rejects anything else. Placement is not in the template at all (the
per-run Workflow carries it as plain values: tests/test_run_workflow.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any

import pytest
import yaml
from argo_expr import render
from argo_schema import problems

from argomlops import pod
from argomlops.config import MLOpsSpec
from argomlops.workflows import names
from argomlops.workflows.generate import TEMPLATE_YAML, main, template_dict, template_yaml
from argomlops.workflows.retry import PREEMPTION_EXPRESSION
from argomlops.workflows.run import run_parameters
from argomlops.workflows.template import parameter_defaults

RUN_ID = "2026-11-27_09h01m09s"
DEFAULT_IMAGE = "registry.example/argomlops-trainer:1.0"
"""The operator's trainer_image (the chart's trainer.image), for specs without image."""


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return template_dict()


def _templates(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in template["spec"]["templates"]}


def _tasks(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entry = _templates(template)[template["spec"]["entrypoint"]]
    return {t["name"]: t for t in entry["dag"]["tasks"]}


def _variables(spec: MLOpsSpec | None = None, stage: str = "vqvae") -> dict[str, str]:
    """The variables Argo would offer one leaf pod of a run built from `spec`."""
    params = run_parameters(run_id=RUN_ID, config_map="fafa-cm", spec=spec or MLOpsSpec(), image=DEFAULT_IMAGE)
    variables = {f"workflow.parameters.{key}": value for key, value in params.items()}
    variables["inputs.parameters.stage"] = stage
    return variables


def _runs(template: dict[str, Any], spec: MLOpsSpec) -> dict[str, bool]:
    """Which DAG tasks of a run would execute: each `when` rendered, then evaluated (govaluate subset)."""
    from argo_expr import evaluate

    variables = _variables(spec)
    return {
        name: evaluate(render(task["when"], variables), {}) if "when" in task else True
        for name, task in _tasks(template).items()
    }


# --- the generated file ---------------------------------------------------------------------------


def test_committed_yaml_is_what_the_builder_generates() -> None:
    """Regenerate with `ARGOMLOPS_REGENERATE=1 pytest tests/test_workflow_template.py` (never by hand)."""
    text = template_yaml()
    if os.environ.get("ARGOMLOPS_REGENERATE") == "1":
        TEMPLATE_YAML.write_text(text)
    assert TEMPLATE_YAML.read_text() == text, "workflows/argomlops-train.yaml is stale: python -m argomlops.workflows"
    assert yaml.safe_load(text) == template_dict()


def test_generate_check_reports_a_stale_file(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "t.yaml"
    assert main(["-o", str(target)]) == 0
    assert main(["--check", "-o", str(target)]) == 0
    target.write_text(target.read_text().replace("argomlops-trainer", "someone-else"))
    assert main(["--check", "-o", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err


def test_template_matches_argo_schema(template: dict[str, Any]) -> None:
    assert problems("WorkflowTemplate", template) == []


def test_strict_schema_catches_a_removed_field(template: dict[str, Any]) -> None:
    """The schema check has teeth: Argo v4 dropped the singular `semaphore`."""
    broken = json.loads(json.dumps(template))
    broken["spec"]["templates"][0]["synchronization"] = {"semaphore": {"configMapKeyRef": {"name": "q", "key": "k"}}}
    assert any("semaphore" in line for line in problems("WorkflowTemplate", broken))


def test_every_parameter_is_declared_and_used(template: dict[str, Any]) -> None:
    declared = [p["name"] for p in template["spec"]["arguments"]["parameters"]]
    assert declared == list(parameter_defaults())
    text = json.dumps(template["spec"]["templates"])
    used = set(re.findall(r"workflow\.parameters\.([a-z-]+)", text))
    assert used == set(declared)
    required = {p["name"] for p in template["spec"]["arguments"]["parameters"] if "value" not in p}
    run = {names.P_ARTIFACTS_BUCKET, names.P_RUN_KEY}  # where the run's pictures and logs go, from the operator
    # The image's default is the chart's trainer.image (test_helm_chart.py): none is published to fall back on.
    assert required == {names.P_RUN_ID, names.P_CONFIG_MAP, names.P_ARTIFACTS, names.P_IMAGE, *run}


def test_parameter_defaults_are_the_models_defaults(template: dict[str, Any]) -> None:
    """A Workflow that leaves a parameter out gets what a manifest that leaves the field out gets."""
    defaults = {p["name"]: p.get("value") for p in template["spec"]["arguments"]["parameters"]}
    spec = MLOpsSpec()
    given = run_parameters(run_id=RUN_ID, config_map="cm", spec=spec)
    for key, value in defaults.items():
        if value is not None:
            assert given[key] == value, key
    assert template["spec"]["activeDeadlineSeconds"] == spec.placement.active_deadline_seconds


def test_no_expression_tags_anywhere(template: dict[str, Any]) -> None:
    """Argo computes nothing here: `{{=...}}` tags (mis-evaluated with retries in Argo's past) are absent."""
    assert "{{=" not in json.dumps(template)
    assert all("podSpecPatch" not in leaf for leaf in template["spec"]["templates"])


# --- the DAG ----------------------------------------------------------------------------------------


def test_dag_runs_vqvae_then_pixelcnn(template: dict[str, Any]) -> None:
    tasks = _tasks(template)
    assert tasks["vqvae"]["template"] == tasks["pixelcnn"]["template"] == "train"
    assert tasks["pixelcnn"]["depends"] == "vqvae"
    assert {p["name"]: p["value"] for p in tasks["pixelcnn"]["arguments"]["parameters"]} == {"stage": "pixelcnn"}
    assert _runs(template, MLOpsSpec()) == {"vqvae": True, "pixelcnn": True, "command": False, "command-private": False}


@pytest.mark.parametrize(
    ("stages", "expected"),
    [(["vqvae"], {"vqvae": True, "pixelcnn": False}), (["pixelcnn"], {"vqvae": False, "pixelcnn": True})],
)
def test_stages_not_in_the_run_are_skipped(
    template: dict[str, Any], stages: list[str], expected: dict[str, bool]
) -> None:
    runs = _runs(template, MLOpsSpec.model_validate({"stages": stages}))
    assert runs == {**expected, "command": False, "command-private": False}


def test_when_conditions_use_only_what_govaluate_and_expr_share(template: dict[str, Any]) -> None:
    """Argo 3.x reads `when` with govaluate, newer versions with expr: no operator only one of them knows."""
    for task in _tasks(template).values():
        without_tags = re.sub(r"\{\{[^}]*\}\}", "X", task["when"])
        assert set(re.findall(r"[=!~&|<>]+", without_tags)) <= {"==", "!=", "&&", "||"}


def test_git_source_runs_only_the_command(template: dict[str, Any]) -> None:
    spec = MLOpsSpec.model_validate({"git": {"repo": "https://github.com/ex/train", "command": ["python", "t.py"]}})
    assert _runs(template, spec) == {"vqvae": False, "pixelcnn": False, "command": True, "command-private": False}
    private = spec.model_copy(update={"git": spec.git.model_copy(update={"secret": "git-token"})})  # type: ignore[union-attr]
    assert _runs(template, private) == {"vqvae": False, "pixelcnn": False, "command": False, "command-private": True}


# --- the trainer pod ----------------------------------------------------------------------------------


def test_trainer_command_is_the_contract(template: dict[str, Any]) -> None:
    spec = MLOpsSpec.model_validate({"artifacts": "gs://antfield/FAFA/artifacts"})
    train = _templates(template)["train"]["container"]
    argv = [render(part, _variables(spec, "pixelcnn")) for part in train["command"] + train["args"]]
    assert argv == [
        "argomlops", "train", "--config", "/etc/argomlops/run.yaml", "--run-id", RUN_ID,
        "--stage", "pixelcnn", "--artifacts", "gs://antfield/FAFA/artifacts",
    ]  # fmt: skip
    assert render(train["image"], _variables(spec)) == DEFAULT_IMAGE  # no spec.image: the operator's default
    assert render(train["image"], _variables(spec.model_copy(update={"image": "mine:2"}))) == "mine:2"


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_run_config_is_mounted_read_only(template: dict[str, Any], leaf: str) -> None:
    pod = _templates(template)[leaf]
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert render(volume["configMap"]["name"], _variables()) == "fafa-cm"
    (mount,) = [m for m in pod["container"]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": "/etc/argomlops", "readOnly": True}


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_gpu_and_spot_nodes_are_tolerated(template: dict[str, Any], leaf: str) -> None:
    pod = _templates(template)[leaf]
    tolerations = {(t["key"], t["effect"]) for t in pod["tolerations"]}
    assert {("nvidia.com/gpu", "NoSchedule"), ("cloud.google.com/gke-spot", "NoSchedule")} <= tolerations
    requests = pod["container"]["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_preemption_budget(template: dict[str, Any], leaf: str) -> None:
    retry = _templates(template)[leaf]["retryStrategy"]
    assert retry["retryPolicy"] == "Always"
    assert retry["expression"] == PREEMPTION_EXPRESSION
    spec = MLOpsSpec.model_validate({"placement": {"maxPreemptions": 4}})
    assert render(retry["limit"], _variables(spec)) == "4"
    assert set(retry["backoff"]) == {"duration", "factor", "cap"}


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_gpu_queue_semaphore(template: dict[str, Any], leaf: str) -> None:
    (semaphore,) = _templates(template)[leaf]["synchronization"]["semaphores"]
    ref = semaphore["configMapKeyRef"]
    assert ref["name"] == names.GPU_QUEUE_CONFIG_MAP == "argomlops-gpu-queue"
    spec = MLOpsSpec.model_validate({"placement": {"accelerator": "nvidia-l4"}})
    assert render(ref["key"], _variables(spec)) == "nvidia-l4"
    # A CPU-only run queues on a key of its own: it never takes a GPU's slot.
    cpu_only = MLOpsSpec.model_validate({"placement": {"accelerator": "nvidia-l4", "gpus": 0}})
    assert render(ref["key"], _variables(cpu_only)) == names.CPU_QUEUE_KEY


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_every_pod_hands_the_trainer_report_to_argo(template: dict[str, Any], leaf: str) -> None:
    """The report file the trainer writes is the pod's output parameter: Argo copies it into the node."""
    container = _templates(template)[leaf]["container"]
    env = {e["name"]: e["value"] for e in container["env"]}
    (output,) = _templates(template)[leaf]["outputs"]["parameters"]
    assert output["name"] == names.REPORT_PARAMETER
    assert output["valueFrom"] == {"path": env[pod.REPORT_ENV], "default": "{}"}


def test_workload_identity_and_non_root(template: dict[str, Any]) -> None:
    spec = template["spec"]
    assert spec["serviceAccountName"] == "argomlops-trainer"
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 1000 and pod["fsGroup"] == 1000
    for leaf in ("train", "git-command"):
        container = _templates(template)[leaf]["container"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # Workload Identity: no key file mounted, no credentials variable.
        assert not any(e["name"] == "GOOGLE_APPLICATION_CREDENTIALS" for e in container.get("env", []))
        assert [v["name"] for v in _templates(template)[leaf]["volumes"]] == ["run-config", "tmp", "home"]


def test_lifetime_settings(template: dict[str, Any]) -> None:
    spec = template["spec"]
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["podGC"]["strategy"] == "OnPodSuccess"
    assert spec["ttlStrategy"]["secondsAfterSuccess"] > 0 and spec["ttlStrategy"]["secondsAfterFailure"] > 0


def test_pods_are_labelled_with_run_and_stage(template: dict[str, Any]) -> None:
    labels = _templates(template)["train"]["metadata"]["labels"]
    rendered = {key: render(value, _variables(stage="pixelcnn")) for key, value in labels.items()}
    assert rendered == {"argomlops.dev/stage": "pixelcnn", "argomlops.dev/run-id": RUN_ID}


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_progress_file_is_left_to_argo(template: dict[str, Any], leaf: str) -> None:
    """Argo sets $ARGO_PROGRESS_FILE on the main container; overriding it would hide the trainer's N/M."""
    env = _templates(template)[leaf]["container"].get("env", [])
    assert not [e for e in env if e["name"].startswith("ARGO_")]


# --- any container: a git repository and a command ----------------------------------------------------


def test_git_source_is_checked_out_and_its_command_run(template: dict[str, Any]) -> None:
    spec = MLOpsSpec.model_validate(
        {"git": {"repo": "https://github.com/ex/train", "revision": "v2", "command": ["python", "t.py", "a b"]}}
    )
    variables = _variables(spec)
    pod = _templates(template)["git-command"]
    (source,) = pod["inputs"]["artifacts"]
    assert source["path"] == "/src"
    assert render(source["git"]["repo"], variables) == "https://github.com/ex/train"
    assert render(source["git"]["revision"], variables) == "v2"
    container = pod["container"]
    assert container["workingDir"] == "/src"
    assert container["command"] == ["sh", "-c"]
    (script,) = [render(a, variables) for a in container["args"]]
    # exec: the user's process gets SIGTERM itself; shell quoting keeps "a b" one argument.
    assert shlex.split(script) == ["exec", "python", "t.py", "a b"]
    env = {e["name"]: render(e["value"], variables) for e in container["env"]}
    assert env["ARGOMLOPS_CONFIG"] == "/etc/argomlops/run.yaml"
    assert env["ARGOMLOPS_RUN_ID"] == RUN_ID


def test_a_failed_pod_reports_its_last_log_lines(template: dict[str, Any]) -> None:
    # The trainer prints one `error: ...` line before exit 2; Kubernetes turns the last log lines of a
    # failed container into its termination message, which Argo shows as the node message.
    for name in ("train", "git-command"):
        assert _templates(template)[name]["container"]["terminationMessagePolicy"] == "FallbackToLogsOnError"


# --- what a person sees in the Argo UI: the newest pictures and the logs, in the run's bucket ----------


def test_each_stage_node_declares_its_newest_grid_in_the_run_folder(template: dict[str, Any]) -> None:
    spec = MLOpsSpec.model_validate({"artifacts": "gs://antfield/FAFA/artifacts"})
    train = _templates(template)["train"]
    (artifact,) = train["outputs"]["artifacts"]
    variables = _variables(spec, "pixelcnn")
    gcs = {key: render(value, variables) for key, value in artifact["gcs"].items()}
    # In the bucket, under the run, through the pod's identity (no serviceAccountKeySecret: Workload Identity).
    assert gcs == {"bucket": "antfield", "key": f"FAFA/artifacts/{RUN_ID}/pixelcnn/newest.png"}
    # A plain PNG at the path the trainer is told to copy each new grid to; optional before the first grid.
    env = {e["name"]: e["value"] for e in train["container"]["env"]}
    assert artifact["path"] == env["ARGOMLOPS_NEWEST_IMAGES"] == "/tmp/argomlops/newest.png"
    assert artifact["archive"] == {"none": {}} and artifact["optional"] is True


@pytest.mark.parametrize("leaf", ["train", "git-command"])
def test_every_pod_log_is_archived_under_the_run(template: dict[str, Any], leaf: str) -> None:
    spec = MLOpsSpec.model_validate({"artifacts": "gs://antfield/FAFA/artifacts"})
    location = _templates(template)[leaf]["archiveLocation"]
    assert location["archiveLogs"] is True and set(location) == {"archiveLogs", "gcs"}
    variables = {**_variables(spec), "pod.name": "fafa-2026-11-27-09h01m09s-train-123"}
    key = render(location["gcs"]["key"], variables)
    # Argo's executor appends /main.log; pod names differ per attempt, so retries keep every log.
    assert key == f"FAFA/artifacts/{RUN_ID}/logs/fafa-2026-11-27-09h01m09s-train-123"
    assert render(location["gcs"]["bucket"], variables) == "antfield"
    assert "serviceAccountKeySecret" not in location["gcs"]
