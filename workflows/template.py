"""The `argomlops-train` WorkflowTemplate: where a run's pods go, how they wait and how they survive preemption.

One DAG, three tasks:

- `vqvae` then `pixelcnn`: the built-in trainer (`argomlops train ... --stage <stage>`), each skipped
  when its stage is not in the `stages` parameter or when a git source replaces the trainer;
- `command`: a user's git repository, checked out at /src, running the `command` parameter.

Both leaf templates share one pod recipe: the per-run ConfigMap mounted read-only at /etc/argomlops, the
GPU placement, the GPU queue semaphore, the preemption retry strategy, a non-root security context and
the `argomlops-trainer` service account (GKE Workload Identity: no key files in pods).

Placement that depends on parameters lives in `podSpecPatch` because Argo cannot template resource
quantities (`nvidia.com/gpu: "{{...}}"` fails to parse as a Quantity) nor add or drop a nodeSelector key
with a plain parameter. Two expression tags do that: the `cloud.google.com/gke-spot` selector is set
only when `spot` is "true" (on-demand nodes carry no such label, so `"false"` could never match) and the
accelerator selector is dropped when `gpus` is "0". `null` deletes a key in a strategic merge patch.

Progress: Argo gives every main container `$ARGO_PROGRESS_FILE` and its executor reads the "N/M" the
trainer writes there (every 3 s; patched to the controller every `ARGO_PROGRESS_PATCH_TICK_DURATION`,
1 m by default). Nothing needs configuring here; the template only must not override that variable,
and the git command runs through `exec` so it inherits it.
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Parameter, Resources, WorkflowTemplate
from hera.workflows import models as m

from argomlops.config import STAGE_ORDER
from argomlops.workflows import names
from argomlops.workflows.retry import (
    BACKOFF_CAP,
    BACKOFF_DURATION,
    BACKOFF_FACTOR,
    PREEMPTION_EXPRESSION,
    RETRY_POLICY,
)

DEFAULT_IMAGE = "ghcr.io/argomlops/argomlops-trainer:0.1.0"
TERMINATION_GRACE_SECONDS = 60
"""Time between SIGTERM and SIGKILL for an ordinary deletion (drain, `argo stop`): enough to write a
checkpoint. A GKE spot preemption does not honour it: graceful node shutdown gives non-system pods
about 15 s of the VM's 30 s notice, so the trainer must checkpoint within that."""
ACTIVE_DEADLINE_SECONDS = 86400
"""Default hard limit on one run; the per-run Workflow sets `placement.activeDeadlineSeconds`."""
TTL_AFTER_SUCCESS = 3 * 86400
TTL_AFTER_FAILURE = 7 * 86400
"""Finished Workflows stay a few days for the UI and the operator's status, failures longer."""
CPU_REQUEST = "2"
MEMORY_REQUEST = "8Gi"
MEMORY_LIMIT = "12Gi"
"""Sized for a GKE n1-standard-4 + T4 node (about 3.9 CPU and 12.6 GiB allocatable)."""
UID = 1000

SPOT_LABEL = "cloud.google.com/gke-spot"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"

PARAMETER_DEFAULTS: dict[str, str | None] = {
    names.P_RUN_ID: None,
    names.P_CONFIG_MAP: None,
    names.P_ARTIFACTS: None,
    names.P_IMAGE: DEFAULT_IMAGE,
    names.P_STAGES: "vqvae,pixelcnn",
    names.P_GPUS: "1",
    names.P_ACCELERATOR: "nvidia-tesla-t4",
    names.P_SPOT: "true",
    names.P_MAX_PREEMPTIONS: "10",
    names.P_GIT_REPO: "",
    names.P_GIT_REVISION: "",
    names.P_COMMAND: "",
}
"""Default of each template parameter; None = required (the per-run Workflow always passes all)."""

PARAMETER_DESCRIPTIONS = {
    names.P_RUN_ID: "Run id, e.g. 2026-11-27_09h01m09s; the run writes <artifacts>/<run-id>/.",
    names.P_CONFIG_MAP: "ConfigMap holding run.yaml, mounted read-only at /etc/argomlops.",
    names.P_ARTIFACTS: "Artifacts base URI (gs://bucket/prefix).",
    names.P_IMAGE: "Trainer container image.",
    names.P_STAGES: "Comma-separated stages to run: vqvae, pixelcnn.",
    names.P_GPUS: "GPUs per training pod; 0 runs on CPU and drops the accelerator selector.",
    names.P_ACCELERATOR: "GKE accelerator (node label value and GPU queue key).",
    names.P_SPOT: "true: only spot nodes; false: no spot selector.",
    names.P_MAX_PREEMPTIONS: "How many preemptions each stage may survive.",
    names.P_GIT_REPO: "Optional https git repository whose command replaces the built-in trainer.",
    names.P_GIT_REVISION: "Branch, tag or commit of git-repo.",
    names.P_COMMAND: "Shell-quoted command run in the checkout (/src) when git-repo is set.",
}


def _wf(parameter: str) -> str:
    return f"{{{{workflow.parameters.{parameter}}}}}"


def _stage_lists(stage: str) -> list[str]:
    """Every `stages` value that includes `stage`: the ordered, non-empty subsets of the stage order."""
    order = list(STAGE_ORDER)
    subsets = ([s for i, s in enumerate(order) if mask >> i & 1] for mask in range(1, 2 ** len(order)))
    return sorted(",".join(subset) for subset in subsets if stage in subset)


def _when_stage(stage: str) -> str:
    # Only quoted strings, ==, &&, || and parentheses: govaluate (Argo 3.x `when`) and expr (which
    # newer Argo versions move `when` to) read them alike; a regex operator would tie us to one.
    listed = " || ".join(f"'{_wf(names.P_STAGES)}' == '{value}'" for value in _stage_lists(stage))
    return f"'{_wf(names.P_GIT_REPO)}' == '' && ({listed})"


WHEN_COMMAND = f"'{_wf(names.P_GIT_REPO)}' != ''"


def placement_patch() -> str:
    """The leaf templates' `podSpecPatch`: node selectors, GPU count and termination grace period (JSON)."""
    spot = f"{{{{=workflow.parameters.{names.P_SPOT} == 'true' ? '\"true\"' : 'null'}}}}"
    accelerator = (
        f"{{{{=workflow.parameters.{names.P_GPUS} == '0' ? 'null' : "
        f"'\"' + workflow.parameters.{names.P_ACCELERATOR} + '\"'}}}}"
    )
    gpus = f'{{"{GPU_RESOURCE}": "{_wf(names.P_GPUS)}"}}'
    lines = [
        "{",
        f'  "terminationGracePeriodSeconds": {TERMINATION_GRACE_SECONDS},',
        '  "nodeSelector": {',
        f'    "{SPOT_LABEL}": {spot},',
        f'    "{ACCELERATOR_LABEL}": {accelerator}',
        "  },",
        '  "containers": [',
        f'    {{"name": "main", "resources": {{"requests": {gpus}, "limits": {gpus}}}}}',
        "  ]",
        "}",
    ]
    return "\n".join(lines) + "\n"


def retry_strategy() -> m.RetryStrategy:
    """Retry preemptions only, at most `max-preemptions` times per stage, with a capped backoff."""
    return m.RetryStrategy(
        limit=m.IntOrString(_wf(names.P_MAX_PREEMPTIONS)),
        retry_policy=RETRY_POLICY,
        expression=PREEMPTION_EXPRESSION,
        backoff=m.Backoff(duration=BACKOFF_DURATION, factor=m.IntOrString(BACKOFF_FACTOR), cap=BACKOFF_CAP),
    )


def gpu_queue() -> m.Synchronization:
    """The GPU queue: a semaphore sized by the chart's ConfigMap, one key per accelerator.

    Template-level locks are resolved after parameter substitution (argo-workflows PR #3957), so the
    key can follow the `accelerator` parameter; Workflow-level ones are not (issue #4894).
    """
    key_ref = m.ConfigMapKeySelector(name=names.GPU_QUEUE_CONFIG_MAP, key=_wf(names.P_ACCELERATOR))
    return m.Synchronization(semaphores=[m.SemaphoreRef(config_map_key_ref=key_ref)])


def tolerations() -> list[m.Toleration]:
    """GPU nodes carry the `nvidia.com/gpu` taint; spot pools may carry `gke-spot` (tolerating is harmless)."""
    return [
        m.Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
        m.Toleration(key=SPOT_LABEL, operator="Equal", value="true", effect="NoSchedule"),
    ]


def container_security() -> m.SecurityContext:
    """No root, no privilege escalation, no Linux capabilities."""
    return m.SecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
    )


def pod_security() -> m.PodSecurityContext:
    """Non-root pods whose volumes are group-writable by the trainer's group."""
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=UID,
        fs_group=UID,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def _leaf(
    name: str,
    *,
    stage: str,
    inputs: list[Parameter] | list[m.Artifact],
    command: list[str],
    args: list[str],
    env: list[m.EnvVar],
    working_dir: str | None = None,
) -> Container:
    """One training pod recipe; the arguments are what differs between the trainer and a git command."""
    return Container(
        name=name,
        inputs=inputs,
        command=command,
        args=args,
        env=env,
        working_dir=working_dir,
        image=_wf(names.P_IMAGE),
        labels={names.LABEL_STAGE: stage, names.LABEL_RUN_ID: _wf(names.P_RUN_ID)},
        # A plain volume: hera's ConfigMapVolume would name the ConfigMap after the volume.
        volumes=[m.Volume(name="run-config", config_map=m.ConfigMapVolumeSource(name=_wf(names.P_CONFIG_MAP)))],
        volume_mounts=[m.VolumeMount(name="run-config", mount_path=names.CONFIG_MOUNT, read_only=True)],
        resources=Resources(cpu_request=CPU_REQUEST, memory_request=MEMORY_REQUEST, memory_limit=MEMORY_LIMIT),
        pod_spec_patch=placement_patch(),
        tolerations=tolerations(),
        retry_strategy=retry_strategy(),
        synchronization=gpu_queue(),
        security_context=container_security(),
        # A failed pod's last log lines become its termination message, which Argo shows as the node's
        # message and the operator mirrors into the MLOps status: the trainer's one-line error reaches
        # `kubectl get mlops` without anyone opening the pod logs.
        termination_message_policy="FallbackToLogsOnError",
    )


def _env(extra: dict[str, str] | None = None) -> list[m.EnvVar]:
    # PYTHONUNBUFFERED: log lines reach the Argo UI as they are written, not when a buffer fills.
    values = {"PYTHONUNBUFFERED": "1", **(extra or {})}
    return [m.EnvVar(name=key, value=value) for key, value in values.items()]


def train_container() -> Container:
    """The built-in trainer for one stage (input parameter `stage`)."""
    stage = "{{inputs.parameters.stage}}"
    return _leaf(
        "train",
        stage=stage,
        inputs=[Parameter(name="stage")],
        command=["argomlops", "train"],
        args=[
            "--config",
            names.CONFIG_PATH,
            "--run-id",
            _wf(names.P_RUN_ID),
            "--stage",
            stage,
            "--artifacts",
            _wf(names.P_ARTIFACTS),
        ],
        env=_env(),
    )


def git_container() -> Container:
    """A user's repository at `git-revision`, checked out at /src, running `command` with the run's settings."""
    source = m.Artifact(
        name="source",
        path=names.SOURCE_PATH,
        git=m.GitArtifact(repo=_wf(names.P_GIT_REPO), revision=_wf(names.P_GIT_REVISION)),
    )
    return _leaf(
        "git-command",
        stage="command",
        inputs=[source],
        working_dir=names.SOURCE_PATH,
        # `exec` makes the user's process the one that receives SIGTERM on preemption.
        command=["sh", "-c"],
        args=[f"exec {_wf(names.P_COMMAND)}"],
        env=_env(
            {
                "ARGOMLOPS_CONFIG": names.CONFIG_PATH,
                "ARGOMLOPS_RUN_ID": _wf(names.P_RUN_ID),
                "ARGOMLOPS_ARTIFACTS": _wf(names.P_ARTIFACTS),
                "ARGOMLOPS_STAGES": _wf(names.P_STAGES),
            }
        ),
    )


def build_train_template() -> WorkflowTemplate:
    """Return the `argomlops-train` WorkflowTemplate (installed once per namespace by the Helm chart)."""
    arguments = [
        Parameter(name=key, value=default, description=PARAMETER_DESCRIPTIONS[key])
        if default is not None
        else Parameter(name=key, description=PARAMETER_DESCRIPTIONS[key])
        for key, default in PARAMETER_DEFAULTS.items()
    ]
    with WorkflowTemplate(
        name=names.TEMPLATE_NAME,
        labels={"app.kubernetes.io/name": "argomlops", "app.kubernetes.io/component": "train"},
        annotations={
            "workflows.argoproj.io/description": "argomlops training run: VQ-VAE then PixelCNN prior on a spot GPU, "
            "or a git repository's command, with the same placement, GPU queue and preemption retries.",
        },
        entrypoint="run",
        arguments=arguments,
        service_account_name=names.SERVICE_ACCOUNT,
        security_context=pod_security(),
        active_deadline_seconds=ACTIVE_DEADLINE_SECONDS,
        # Successful pods go at once; failed ones stay so `kubectl logs` works until the TTL removes the run.
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=TTL_AFTER_SUCCESS, seconds_after_failure=TTL_AFTER_FAILURE),
        workflow_metadata=m.WorkflowMetadata(labels={"app.kubernetes.io/part-of": "argomlops"}),
    ) as template:
        train = train_container()
        git = git_container()
        with DAG(name="run"):
            train(name="vqvae", arguments={"stage": "vqvae"}, when=_when_stage("vqvae"))
            train(name="pixelcnn", arguments={"stage": "pixelcnn"}, when=_when_stage("pixelcnn"), depends="vqvae")
            git(name="command", when=WHEN_COMMAND)
    return template
