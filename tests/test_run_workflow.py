"""The per-run Workflow built by `build_run_workflow`: name, labels, arguments, placement, the Argo schema."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from argo_schema import problems

from argomlops.config import MLOpsSpec
from argomlops.workflows import names
from argomlops.workflows.run import PLACEMENT_ANNOTATION, build_run_workflow
from argomlops.workflows.template import parameter_defaults

RUN_ID = "2026-11-27_09h01m09s"
DEFAULT_IMAGE = "registry.example/argomlops-trainer:1.0"
"""The operator's trainer_image, for specs without image."""


def _build(spec: MLOpsSpec | None = None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "name": "fafa",
        "namespace": "ml",
        "run_id": RUN_ID,
        "config_map": names.k8s_name("fafa", RUN_ID),
        "spec": spec or MLOpsSpec(),
        "labels": {"team": "ants"},
        "image": DEFAULT_IMAGE,
    }
    kwargs.update(overrides)
    return build_run_workflow(**kwargs)


def _params(workflow: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}


def test_k8s_name_maps_run_id_to_a_dns_label() -> None:
    assert names.k8s_name("fafa", RUN_ID) == "fafa-2026-11-27-09h01m09s"
    assert names.k8s_name("My.Model", "2026-11-27_09h01m09s-2") == "my-model-2026-11-27-09h01m09s-2"


def test_k8s_name_shortens_long_names_but_keeps_them_distinct() -> None:
    first = names.k8s_name("a" * 80, RUN_ID)
    second = names.k8s_name("a" * 79 + "b", RUN_ID)
    assert len(first) <= 63 and len(second) <= 63
    assert first != second
    assert first.endswith("-2026-11-27-09h01m09s")


def test_a_resumed_run_gets_a_workflow_of_its_own_under_the_same_run_id() -> None:
    assert names.workflow_name("fafa", RUN_ID) == names.k8s_name("fafa", RUN_ID)
    assert names.workflow_name("fafa", RUN_ID, resumes=1) == "fafa-2026-11-27-09h01m09s-r2"
    long = names.workflow_name("a" * 80, RUN_ID, resumes=11)
    assert len(long) <= 63 and long.endswith("-2026-11-27-09h01m09s-r12")
    workflow = _build(resumes=2)
    assert workflow["metadata"]["name"] == "fafa-2026-11-27-09h01m09s-r3"
    assert _params(workflow)["run-id"] == RUN_ID and workflow["metadata"]["labels"]["argomlops.dev/run-id"] == RUN_ID


def test_k8s_name_rejects_empty_names() -> None:
    with pytest.raises(ValueError, match="cannot make a Kubernetes name"):
        names.k8s_name("___", RUN_ID)


def test_workflow_references_the_template_with_every_parameter() -> None:
    workflow = _build()
    assert workflow["apiVersion"] == "argoproj.io/v1alpha1"
    assert workflow["kind"] == "Workflow"
    assert workflow["metadata"]["name"] == "fafa-2026-11-27-09h01m09s"
    assert workflow["metadata"]["namespace"] == "ml"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "argomlops-train"}
    params = _params(workflow)
    assert list(params) == list(parameter_defaults())
    assert params["run-id"] == RUN_ID
    assert params["config-map"] == "fafa-2026-11-27-09h01m09s"
    assert params["run-vqvae"] == params["run-pixelcnn"] == "true"
    assert params["queue"] == "nvidia-tesla-t4"
    assert params["max-preemptions"] == "10"
    assert params["git-repo"] == params["git-revision"] == params["git-secret"] == params["command"] == ""
    assert params["image"] == DEFAULT_IMAGE


def test_the_specs_own_image_wins_and_without_any_the_templates_default_applies() -> None:
    assert _params(_build(MLOpsSpec.model_validate({"image": "mine:2"})))["image"] == "mine:2"
    assert "image" not in _params(_build(image=None))  # the chart's trainer.image, the template's default


def test_labels_on_workflow_and_pods() -> None:
    workflow = _build()
    expected = {"team": "ants", "argomlops.dev/mlops": "fafa", "argomlops.dev/run-id": RUN_ID}
    assert workflow["metadata"]["labels"] == expected
    assert workflow["spec"]["podMetadata"]["labels"] == expected


def test_placement_and_deadline_follow_the_spec() -> None:
    spec = MLOpsSpec.model_validate(
        {
            "stages": ["pixelcnn"],
            "artifacts": "gs://antfield/FAFA/artifacts",
            "placement": {
                "gpus": 2,
                "accelerator": "nvidia-l4",
                "spot": False,
                "maxPreemptions": 3,
                "activeDeadlineSeconds": 3600,
            },
        }
    )
    workflow = _build(spec)
    params = _params(workflow)
    assert (params["run-vqvae"], params["run-pixelcnn"]) == ("false", "true")
    assert params["queue"] == "nvidia-l4"
    assert params["max-preemptions"] == "3"
    assert workflow["spec"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    patch = json.loads(workflow["spec"]["podSpecPatch"])
    assert patch["containers"] == [
        {"name": "main", "resources": {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}}
    ]
    assert json.loads(workflow["metadata"]["annotations"][PLACEMENT_ANNOTATION])["gpus"] == 2
    assert params["artifacts"] == "gs://antfield/FAFA/artifacts"
    assert workflow["spec"]["activeDeadlineSeconds"] == 3600
    assert workflow["metadata"]["annotations"]["argomlops.dev/artifacts"] == f"gs://antfield/FAFA/artifacts/{RUN_ID}"


def test_default_placement_is_one_spot_t4() -> None:
    spec = _build()["spec"]
    assert spec["nodeSelector"] == {
        "cloud.google.com/gke-spot": "true",
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4",
    }
    patch = json.loads(spec["podSpecPatch"])
    (main,) = patch["containers"]
    assert main == {
        "name": "main",
        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}},
    }
    # Time to write a checkpoint after an ordinary deletion (a spot VM gives about 15 s whatever it says).
    assert patch["terminationGracePeriodSeconds"] >= 30


def test_cpu_only_run_asks_for_no_gpu_and_no_accelerator() -> None:
    workflow = _build(MLOpsSpec.model_validate({"placement": {"gpus": 0}}))
    assert _params(workflow)["queue"] == names.CPU_QUEUE_KEY  # not the T4s' queue
    spec = workflow["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert "containers" not in json.loads(spec["podSpecPatch"])
    on_demand = _build(MLOpsSpec.model_validate({"placement": {"gpus": 0, "spot": False}}))["spec"]
    assert "nodeSelector" not in on_demand


def test_git_source_becomes_repo_revision_and_a_shell_quoted_command() -> None:
    spec = MLOpsSpec.model_validate(
        {"git": {"repo": "https://github.com/ex/train", "revision": "v2", "command": ["python", "t.py", "a b"]}}
    )
    params = _params(_build(spec))
    assert params["git-repo"] == "https://github.com/ex/train"
    assert params["git-revision"] == "v2"
    assert shlex.split(params["command"]) == ["python", "t.py", "a b"]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"placement": {"spot": False, "gpus": 0}, "stages": ["pixelcnn"]},
        {"git": {"repo": "https://github.com/ex/train", "command": ["python", "t.py"]}},
    ],
)
def test_workflow_matches_argo_schema(overrides: dict[str, Any]) -> None:
    assert problems("Workflow", _build(MLOpsSpec.model_validate(overrides))) == []


def test_description_leads_back_to_the_mlops_object() -> None:
    annotations = _build()["metadata"]["annotations"]
    assert annotations["workflows.argoproj.io/title"] == f"fafa {RUN_ID}"
    assert "ml/fafa" in annotations["workflows.argoproj.io/description"]
    assert annotations["argomlops.dev/mlops-object"] == "ml/fafa"


def test_description_names_the_report_and_arguments_split_the_bucket() -> None:
    workflow = _build(MLOpsSpec.model_validate({"artifacts": "gs://antfield/FAFA/artifacts/"}))
    description = workflow["metadata"]["annotations"]["workflows.argoproj.io/description"]
    page = f"gs://antfield/FAFA/artifacts/{RUN_ID}/report.html"
    # Markdown: the URI as the link text, the browser URL of the object (the viewer's Google login) as target.
    assert f"report: [{page}](https://storage.cloud.google.com/antfield/FAFA/artifacts/{RUN_ID}/report.html)" in (
        description
    )
    params = _params(workflow)
    assert (params["artifacts-bucket"], params["run-key"]) == ("antfield", f"FAFA/artifacts/{RUN_ID}")
    local = _params(_build(MLOpsSpec.model_validate({"artifacts": "runs"})))
    assert (local["artifacts-bucket"], local["run-key"]) == ("", f"runs/{RUN_ID}")
