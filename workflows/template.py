"""The `argomlops-train` WorkflowTemplate: where a run's pods go, how they wait and how they survive preemption.

One DAG, four tasks:

- `vqvae` then `pixelcnn`: the built-in trainer (`argomlops train ... --stage <stage>`), each skipped
  when its stage is not in the `stages` parameter or when a git source replaces the trainer;
- `command`: a user's git repository, checked out at /src, running the `command` parameter; for a
  private repository `command-private` instead, whose checkout reads the credentials from the Secret
  named by `git-secret` (type kubernetes.io/basic-auth: Argo mounts it into its own init container; the
  token is never a parameter, so it is in no Workflow, log or status).

The leaf templates share one pod recipe: the per-run ConfigMap mounted read-only at /etc/argomlops, the
tolerations of GPU and spot nodes, the GPU queue semaphore, the preemption retry strategy, the
restricted Pod Security Standard (non-root, RuntimeDefault seccomp, no privilege escalation, no
capabilities, a read-only root filesystem with an emptyDir wherever the trainer writes: `SCRATCH`) and
the `argomlops-trainer` service account (GKE Workload Identity: no key files in pods).

Placement is not in the template: node selectors, GPU requests and the termination grace period
depend on the run's `spec.placement`, and the operator writes them as plain values into each per-run
Workflow (`argomlops.workflows.placement`). Computing them here from parameters would take `{{=...}}`
expression tags inside `podSpecPatch`, which Argo has mis-evaluated together with retries (argo
issues #10362, #12941, #5388) and which nothing here can run; plain values are exactly what the tests see.

Each stage has its own "true"/"false" parameter (`run-vqvae`, `run-pixelcnn`), so a task's `when` is
one comparison and a new stage is one more parameter. Parameter defaults come from the models
(`MLOpsSpec()`), so the template and a manifest without those fields agree.

What a person sees in the Argo UI: each stage node's output artifact `newest-images` is the stage's
newest grid (the trainer copies each new grid to $ARGOMLOPS_NEWEST_IMAGES; Argo's executor uploads it
to `<run>/<stage>/newest.png` when the pod ends, through the pod's Workload Identity: the GCS artifact
names no key secret), and every pod's log is archived to `<run>/logs/<pod>/main.log` (`log_archive`),
so it outlives the pod that podGC deletes. Both need the bucket apart from the prefix, which Argo
cannot split without an expression tag: the per-run Workflow passes `artifacts-bucket` and `run-key`.

Progress: Argo gives every main container `$ARGO_PROGRESS_FILE` and its executor reads the "N/M" the
trainer writes there (every 3 s; patched to the controller every `ARGO_PROGRESS_PATCH_TICK_DURATION`,
1 m by default). Nothing needs configuring here; the template only must not override that variable,
and the git command runs through `exec` so it inherits it.
"""

from __future__ import annotations

from hera.workflows import DAG, Container, Parameter, Resources, WorkflowTemplate
from hera.workflows import models as m

from argomlops import pod
from argomlops.config import STAGE_ORDER, MLOpsSpec
from argomlops.workflows import names
from argomlops.workflows.placement import GPU_RESOURCE, SPOT_LABEL
from argomlops.workflows.retry import (
    BACKOFF_CAP,
    BACKOFF_DURATION,
    BACKOFF_FACTOR,
    PREEMPTION_EXPRESSION,
    RETRY_POLICY,
)

TTL_AFTER_SUCCESS = 3 * 86400
TTL_AFTER_FAILURE = 7 * 86400
"""Finished Workflows stay a few days for the UI and the operator's status, failures longer."""
CPU_REQUEST = "2"
MEMORY_REQUEST = "8Gi"
MEMORY_LIMIT = "12Gi"
"""Sized for a GKE n1-standard-4 + T4 node (about 3.9 CPU and 12.6 GiB allocatable)."""
UID = 1000
HOME = "/home/argomlops"
"""HOME of the trainer image's user (Dockerfile); set in the pod as well, so a git command's image agrees."""
TMP = "/tmp"  # nosec B108 # an emptyDir of the pod's own (SCRATCH), not a /tmp shared with anyone
SCRATCH = {"tmp": TMP, "home": HOME}
"""The emptyDirs a training pod writes to besides its run folder (the root filesystem is read-only):
`tmp` is TMPDIR (the report file, the newest grid), `home` holds HOME/.cache (ARGOMLOPS_CACHE: the demo
set and the data synced from gs://; Keras' and matplotlib's settings)."""
SCRATCH_ENV = {"TMPDIR": SCRATCH["tmp"], "HOME": HOME, "ARGOMLOPS_CACHE": f"{HOME}/.cache/argomlops"}
GIT_SECRET_KEYS = ("username", "password")
"""The keys of a kubernetes.io/basic-auth Secret, which Argo's git artifact reads."""


def parameter_defaults() -> dict[str, str | None]:
    """Default of each template parameter, from the models; None = required (every run passes it)."""
    spec = MLOpsSpec()
    defaults: dict[str, str | None] = {
        names.P_RUN_ID: None,
        names.P_CONFIG_MAP: None,
        names.P_ARTIFACTS: None,
        names.P_ARTIFACTS_BUCKET: None,
        names.P_RUN_KEY: None,
        names.P_IMAGE: spec.image,
    }
    defaults.update({names.P_RUN_STAGE[stage]: _bool(stage in spec.stages) for stage in STAGE_ORDER})
    defaults.update(
        {
            names.P_QUEUE: spec.placement.accelerator,
            names.P_MAX_PREEMPTIONS: str(spec.placement.max_preemptions),
            names.P_GIT_REPO: "",
            names.P_GIT_REVISION: "",
            names.P_GIT_SECRET: "",
            names.P_COMMAND: "",
        }
    )
    return defaults


PARAMETER_DESCRIPTIONS = {
    names.P_RUN_ID: "Run id, e.g. 2026-11-27_09h01m09s; the run writes <artifacts>/<run-id>/.",
    names.P_CONFIG_MAP: "ConfigMap holding run.yaml, mounted read-only at /etc/argomlops.",
    names.P_ARTIFACTS: "Artifacts base URI (gs://bucket/prefix).",
    names.P_ARTIFACTS_BUCKET: "The artifacts URI's bucket: Argo writes the node's pictures and logs there.",
    names.P_RUN_KEY: "The run folder's key in that bucket (<prefix>/<run-id>), under which those land.",
    names.P_IMAGE: "Trainer container image; the Helm chart sets its default (trainer.image).",
    **{names.P_RUN_STAGE[stage]: f"true: the run trains its {stage} stage." for stage in STAGE_ORDER},
    names.P_QUEUE: "The run's key in the GPU queue ConfigMap: its GKE accelerator, or cpu for a CPU-only run "
    "(placement itself is in the per-run Workflow).",
    names.P_MAX_PREEMPTIONS: "How many preemptions each stage may survive.",
    names.P_GIT_REPO: "Optional https git repository whose command replaces the built-in trainer.",
    names.P_GIT_REVISION: "Branch, tag or commit of git-repo.",
    names.P_GIT_SECRET: "A private git-repo: the kubernetes.io/basic-auth Secret Argo clones it with.",
    names.P_COMMAND: "Shell-quoted command run in the checkout (/src) when git-repo is set.",
}


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _wf(parameter: str) -> str:
    return f"{{{{workflow.parameters.{parameter}}}}}"


def _when_stage(stage: str) -> str:
    # Only quoted strings, == and &&: govaluate (Argo 3.x `when`) and expr (which newer Argo versions
    # move `when` to) read them alike.
    return f"'{_wf(names.P_GIT_REPO)}' == '' && '{_wf(names.P_RUN_STAGE[stage])}' == 'true'"


WHEN_COMMAND = f"'{_wf(names.P_GIT_REPO)}' != '' && '{_wf(names.P_GIT_SECRET)}' == ''"
WHEN_PRIVATE_COMMAND = f"'{_wf(names.P_GIT_REPO)}' != '' && '{_wf(names.P_GIT_SECRET)}' != ''"


def retry_strategy() -> m.RetryStrategy:
    """Retry preemptions only, at most `max-preemptions` times per stage, with a capped backoff."""
    return m.RetryStrategy(
        limit=m.IntOrString(_wf(names.P_MAX_PREEMPTIONS)),
        retry_policy=RETRY_POLICY,
        expression=PREEMPTION_EXPRESSION,
        backoff=m.Backoff(duration=BACKOFF_DURATION, factor=m.IntOrString(BACKOFF_FACTOR), cap=BACKOFF_CAP),
    )


def gpu_queue() -> m.Synchronization:
    """The GPU queue: a semaphore sized by the chart's ConfigMap, one key per accelerator and one for CPU runs.

    Template-level locks are resolved after parameter substitution (argo-workflows PR #3957), so the
    key can follow the `queue` parameter; Workflow-level ones are not (issue #4894). CPU-only runs pass
    `cpu`, a key of its own, so they never take a GPU's slot.
    """
    key_ref = m.ConfigMapKeySelector(name=names.GPU_QUEUE_CONFIG_MAP, key=_wf(names.P_QUEUE))
    return m.Synchronization(semaphores=[m.SemaphoreRef(config_map_key_ref=key_ref)])


def tolerations() -> list[m.Toleration]:
    """GPU nodes carry the `nvidia.com/gpu` taint; spot pools may carry `gke-spot` (tolerating is harmless)."""
    return [
        m.Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
        m.Toleration(key=SPOT_LABEL, operator="Equal", value="true", effect="NoSchedule"),
    ]


def container_security() -> m.SecurityContext:
    """No root, no privilege escalation, no Linux capabilities, nothing written outside the volumes."""
    return m.SecurityContext(
        run_as_non_root=True,
        run_as_user=UID,
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
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


def _run_gcs(key: str) -> m.GCSArtifact:
    """A GCS location under the run folder, written with the pod's own identity (Workload Identity, no key)."""
    return m.GCSArtifact(bucket=_wf(names.P_ARTIFACTS_BUCKET), key=f"{_wf(names.P_RUN_KEY)}/{key}")


def log_archive() -> m.ArtifactLocation:
    """Argo archives each pod's log to `<run>/logs/<pod name>/main.log`, so the UI shows it after podGC.

    A template-level archiveLocation with archiveLogs turns archiving on for this template whatever the
    controller's default (Argo's IsArchiveLogs: controller on > template > workflow); the executor
    appends `/main.log` to the key. `{{pod.name}}` is distinct per attempt, so a retry keeps the log
    of the preempted attempt beside its own.
    """
    return m.ArtifactLocation(archive_logs=True, gcs=_run_gcs(f"{names.LOGS_FOLDER}/{{{{pod.name}}}}"))


def newest_images(stage: str) -> m.Artifact:
    """The stage node's output artifact: the newest grid, as a plain PNG the Argo UI previews."""
    return m.Artifact(
        name="newest-images",
        path=pod.NEWEST_IMAGES_PATH,
        # A pod stopped before its first grid has none: that is not a failure of the step.
        optional=True,
        # Not tarred: the UI shows only files it can recognise by the key's extension.
        archive=m.ArchiveStrategy(none=m.NoneStrategy()),
        gcs=_run_gcs(f"{stage}/{names.NEWEST_IMAGES_KEY}"),
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
    outputs: list[m.Artifact] | None = None,
) -> Container:
    """One training pod recipe; the arguments are what differs between the trainer and a git command."""
    return Container(
        name=name,
        inputs=inputs,
        outputs=[report_output(), *(outputs or [])],
        archive_location=log_archive(),
        command=command,
        args=args,
        env=env,
        working_dir=working_dir,
        image=_wf(names.P_IMAGE),
        labels={names.LABEL_STAGE: stage, names.LABEL_RUN_ID: _wf(names.P_RUN_ID)},
        # A plain volume: hera's ConfigMapVolume would name the ConfigMap after the volume.
        volumes=[
            m.Volume(name="run-config", config_map=m.ConfigMapVolumeSource(name=_wf(names.P_CONFIG_MAP))),
            *(m.Volume(name=volume, empty_dir=m.EmptyDirVolumeSource()) for volume in SCRATCH),
        ],
        volume_mounts=[
            m.VolumeMount(name="run-config", mount_path=names.CONFIG_MOUNT, read_only=True),
            *(m.VolumeMount(name=volume, mount_path=path) for volume, path in SCRATCH.items()),
        ],
        resources=Resources(cpu_request=CPU_REQUEST, memory_request=MEMORY_REQUEST, memory_limit=MEMORY_LIMIT),
        tolerations=tolerations(),
        retry_strategy=retry_strategy(),
        synchronization=gpu_queue(),
        security_context=container_security(),
        # A failed pod's last log lines become its termination message, which Argo shows as the node's
        # message and the operator mirrors into the MLOps status: the trainer's one-line error reaches
        # `kubectl get mlops` without anyone opening the pod logs.
        termination_message_policy="FallbackToLogsOnError",
    )


def report_output() -> Parameter:
    """The trainer's report (newest checkpoint, bucket requests by class) as an output parameter of the pod.

    Argo's executor reads the file when the main container ends, however it ends (exit 0, 143 after a
    stop or preemption, an error), and the controller copies it into the pod's node of the Workflow
    status, where the operator reads it: the operator learns what the bucket costs without any access to
    the bucket. `default` keeps a pod that wrote none (a git command, an early crash) from failing on it.
    """
    return Parameter(
        name=names.REPORT_PARAMETER,
        value_from=m.ValueFrom(path=pod.REPORT_PATH, default="{}"),
        description="The trainer's report: newest checkpoint and bucket requests by billing class (JSON).",
    )


def _env(extra: dict[str, str] | None = None) -> list[m.EnvVar]:
    # PYTHONUNBUFFERED: log lines reach the Argo UI as they are written, not when a buffer fills.
    # ARGOMLOPS_REPORT_FILE: where the trainer writes the report the pod's output parameter reads.
    # TMPDIR, HOME, ARGOMLOPS_CACHE: inside the emptyDirs (SCRATCH), whatever the image says.
    values = {"PYTHONUNBUFFERED": "1", pod.REPORT_ENV: pod.REPORT_PATH, **SCRATCH_ENV, **(extra or {})}
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
        env=_env({pod.NEWEST_IMAGES_ENV: pod.NEWEST_IMAGES_PATH}),
        outputs=[newest_images(stage)],
    )


def git_container(private: bool = False) -> Container:
    """A user's repository at `git-revision`, checked out at /src, running `command` with the run's settings.

    `private`: the checkout authenticates with the username and password of the Secret `git-secret`.
    """
    credentials: dict[str, m.SecretKeySelector] = {}
    if private:
        username, password = (m.SecretKeySelector(name=_wf(names.P_GIT_SECRET), key=key) for key in GIT_SECRET_KEYS)
        credentials = {"username_secret": username, "password_secret": password}
    source = m.Artifact(
        name="source",
        path=names.SOURCE_PATH,
        git=m.GitArtifact(repo=_wf(names.P_GIT_REPO), revision=_wf(names.P_GIT_REVISION), **credentials),
    )
    return _leaf(
        "git-command-private" if private else "git-command",
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
            }
        ),
    )


def build_train_template() -> WorkflowTemplate:
    """Return the `argomlops-train` WorkflowTemplate (installed once per namespace by the Helm chart)."""
    arguments = [
        Parameter(name=key, value=default, description=PARAMETER_DESCRIPTIONS[key])
        if default is not None
        else Parameter(name=key, description=PARAMETER_DESCRIPTIONS[key])
        for key, default in parameter_defaults().items()
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
        # The per-run Workflow sets the run's own placement.activeDeadlineSeconds; this is the default.
        active_deadline_seconds=MLOpsSpec().placement.active_deadline_seconds,
        # Successful pods go at once; failed ones stay so `kubectl logs` works until the TTL removes the run.
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_success=TTL_AFTER_SUCCESS, seconds_after_failure=TTL_AFTER_FAILURE),
        workflow_metadata=m.WorkflowMetadata(labels={"app.kubernetes.io/part-of": "argomlops"}),
    ) as template:
        train = train_container()
        git = git_container()
        private_git = git_container(private=True)
        with DAG(name="run"):
            previous: str | None = None
            for stage in STAGE_ORDER:
                # `depends: <task>` also holds when that task was skipped, so a run may start at any stage.
                train(name=stage, arguments={"stage": stage}, when=_when_stage(stage), depends=previous)
                previous = stage
            git(name="command", when=WHEN_COMMAND)
            private_git(name="command-private", when=WHEN_PRIVATE_COMMAND)
    return template
