"""An Argo stand-in: runs a Workflow that references the argomlops-train template as local subprocesses.

The Argo controller cannot run here (no cluster), so this module plays its part for the end-to-end test,
and nothing more. It reads the Workflow and the WorkflowTemplate from the test API server and:

1. resolves parameters (template defaults, overridden by the Workflow's arguments);
2. walks the entrypoint DAG in `depends` order, evaluating each task's `when` with Argo's semantics
   (tests/argo_expr.py, the evaluator the template's own tests check against Argo's Go engines);
3. runs each leaf's container exactly as the template specifies it - same command, args and env, with
   every `{{...}}` tag rendered - as a local subprocess. Two things differ, because a pod's filesystem
   is not ours: the ConfigMap is materialised as files in a temporary folder standing for its
   mountPath, and arguments that start with the mountPath are pointed there (each emptyDir is a fresh
   folder of the pod's, and env values in it, TMPDIR, HOME, ARGOMLOPS_CACHE, are pointed there);
   `argomlops` resolves to the console script beside the running Python;
4. writes Workflow status as Argo does: Retry and Pod nodes (`vqvae(0)`, `vqvae(1)`, ...), phase,
   message, progress from `$ARGO_PROGRESS_FILE`, start/finish times, the exit code in
   `outputs.exitCode`, and on failure the last log lines as the node message (the template's
   `terminationMessagePolicy: FallbackToLogsOnError`);
5. applies the template's retryStrategy: `expression` via `argo_expr.should_retry`, and
   `limit` rendered from the parameters (the backoff wait is skipped: nothing here needs a new node);
6. does what Argo's executor does when a pod ends: uploads each output artifact found at its path
   (the path lies in a folder of the pod's own, and env values naming it point there) to its rendered
   `gcs` bucket and key, and with `archiveLocation.archiveLogs` the pod's log to `<key>/main.log`.
7. collects each leaf's output parameters when its pod ends (`valueFrom.path`, else `default`), as
   Argo's wait container does whatever the exit code: the file is the pod's own, so a path named in
   the container's env is pointed at a file of the pod's in the work folder;
8. honours `spec.shutdown: Stop` on the Workflow, as Argo does.

Preemption is simulated as a spot VM's graceful shutdown: SIGTERM to the trainer, and the pod ends with
GKE's message "Pod was terminated in response to imminent node shutdown.".

What Argo does on `spec.shutdown: Stop`, checked in argoproj/argo-workflows (main, 2026-08, commit
f016ad8): `applyExecutionControl` (workflow/controller/exec_control.go) calls
`TerminateContainers` for every running pod outside an exit handler, which signals the containers'
PID 1 with SIGTERM (workflow/controller/pod/queue.go `signalContainers`, workflow/signal) and SIGKILLs
them after the pod's terminationGracePeriodSeconds; it marks the pod's node Failed with "workflow
shutdown with strategy:  Stop" right away, but the node is only fulfilled once the pod's task result
(its outputs) is in. `processNodeRetries` (workflow/controller/operator.go) never retries a node while
the Workflow shuts down: the Retry node takes its last child's phase with "Stopped with strategy
'Stop'", no new task starts, and the Workflow ends Failed with the same message. A node marked Failed
while its pod ran gets its finishedAt only once fulfilled (`markNodePhase`), and its message is then
the pod's own failure reason (`inferFailedReason`: the termination message, which the template's
FallbackToLogsOnError makes the log tail). The stand-in does the same, in that order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from argo_expr import evaluate, render, should_retry
from executables import executable
from kube.argo import PREEMPTED_MESSAGE

GROUP, VERSION = "argoproj.io", "v1alpha1"
LOG_TAIL_LINES = 80  # what Kubernetes keeps of the log for FallbackToLogsOnError (and at most 2048 bytes)
SHUTDOWN_NODE_MESSAGE = "workflow shutdown with strategy:  Stop"  # two spaces, as Argo writes it
STOPPED_MESSAGE = "Stopped with strategy 'Stop'"
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Attempt:
    """One pod of one task: how it ended."""

    task: str
    number: int
    exit_code: int
    preempted: bool
    log: str
    progress_at_sigterm: str | None = None
    stopped: bool = False


@dataclass
class Preemptions:
    """When to preempt: `count` pods in turn, each once its progress passes a seeded random share of its steps.

    Progress, not time: a pod is only ever stopped mid-training (at least one step left), however fast or
    slow the machine is, so every SIGTERM it sends must end in a checkpoint and exit 143.
    """

    count: int = 0
    seed: int = 0
    done: int = 0
    at_fraction: list[float] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.at_fraction = [rng.uniform(0.15, 0.6) for _ in range(self.count)]

    def due(self, progress: str) -> bool:
        """Whether a pod reporting `progress` ("done/total") is to be preempted now."""
        if self.done >= self.count or "/" not in progress:
            return False
        done, total = (int(part) for part in progress.split("/", 1))
        return total > 0 and self.at_fraction[self.done] * total <= done < total


class ArgoStandIn:
    """Executes one Workflow of the argomlops-train template against the test API server."""

    def __init__(self, api: Any, namespace: str, workdir: Path, env: dict[str, str], preemptions: Preemptions) -> None:
        import kubernetes

        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.namespace = namespace
        self.workdir = workdir
        self.env = env
        self.preemptions = preemptions
        self.attempts: list[Attempt] = []
        self.nodes: dict[str, dict[str, Any]] = {}

    # -- status writing -------------------------------------------------------------------------

    def _patch(self, name: str, **status: Any) -> None:
        status["nodes"] = self.nodes
        progress = self._progress()
        if progress:
            status["progress"] = progress
        # Argo's Workflow CRD has no status subresource: the controller patches the object itself.
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflows", name, {"status": status}
        )

    def _progress(self) -> str:
        # Argo sums the progress of the pods it counts: here the newest attempt of each task.
        done = total = 0
        latest: dict[str, dict[str, Any]] = {}
        for node in self.nodes.values():
            if node["type"] == "Pod":
                latest[node["displayName"].split("(")[0]] = node
        for node in latest.values():
            value = node.get("progress", "")
            if "/" in value:
                a, b = value.split("/", 1)
                done, total = done + int(a), total + int(b)
        return f"{done}/{total}" if total else ""

    # -- the workflow -----------------------------------------------------------------------------

    def run(self, workflow_name: str, timeout: float = 600) -> str:
        """Run the Workflow to its end; returns the final phase (Succeeded or Failed)."""
        workflow = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "workflows", workflow_name)
        template_name = workflow["spec"]["workflowTemplateRef"]["name"]
        template = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflowtemplates", template_name
        )
        params = {p["name"]: p.get("value", "") for p in template["spec"]["arguments"]["parameters"]}
        params.update({p["name"]: p.get("value", "") for p in workflow["spec"]["arguments"]["parameters"]})
        variables = {f"workflow.parameters.{k}": str(v) for k, v in params.items()}
        variables["workflow.name"] = workflow_name
        templates = {t["name"]: t for t in template["spec"]["templates"]}
        dag = templates[template["spec"]["entrypoint"]]["dag"]["tasks"]

        started = _now()
        self._patch(workflow_name, phase="Running", startedAt=started)
        deadline = time.monotonic() + timeout
        phases: dict[str, str] = {}
        for task in dag:
            if self._shutdown(workflow_name):
                phases[task["name"]] = "Omitted"  # a Workflow shutting down starts no new node
                continue
            depends = task.get("depends")
            if depends and phases.get(depends) not in ("Succeeded", "Skipped"):
                phases[task["name"]] = "Omitted"
                continue
            when = task.get("when")
            if when and not evaluate(render(when, variables), {}):
                phases[task["name"]] = "Skipped"
                continue
            leaf = templates[task["template"]]
            inputs = {
                f"inputs.parameters.{p['name']}": p["value"] for p in task.get("arguments", {}).get("parameters", [])
            }
            phases[task["name"]] = self._run_task(
                workflow_name, task["name"], leaf, {**variables, **inputs}, params, deadline
            )
            if phases[task["name"]] != "Succeeded":
                failed = self.nodes[f"{task['name']}-retry"]
                self._patch(workflow_name, phase="Failed", finishedAt=_now(), message=failed.get("message", ""))
                return "Failed"
        if self._shutdown(workflow_name) and "Omitted" in phases.values():
            self._patch(workflow_name, phase="Failed", finishedAt=_now(), message=STOPPED_MESSAGE)
            return "Failed"
        self._patch(workflow_name, phase="Succeeded", finishedAt=_now())
        return "Succeeded"

    def _shutdown(self, workflow_name: str) -> bool:
        """Whether someone set the Workflow's `spec.shutdown` (`argo stop`, the operator's budget)."""
        workflow = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "workflows", workflow_name)
        return bool((workflow.get("spec") or {}).get("shutdown"))

    def _materialise_config(self, leaf: dict[str, Any], variables: dict[str, str], node_id: str) -> dict[str, Path]:
        """The ConfigMap volumes as folders, and each emptyDir as a fresh folder of the pod's: {mountPath: folder}."""
        volumes = {v["name"]: v for v in leaf.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in leaf["container"].get("volumeMounts", []):
            if "emptyDir" in volumes[mount["name"]]:
                mounts[mount["mountPath"]] = self.workdir / "pods" / node_id / "volumes" / mount["name"]
                mounts[mount["mountPath"]].mkdir(parents=True, exist_ok=True)
                continue
            source = volumes[mount["name"]]["configMap"]["name"]
            config_map = self.core.read_namespaced_config_map(render(source, variables), self.namespace)
            folder = self.workdir / "mounts" / config_map.metadata.name
            folder.mkdir(parents=True, exist_ok=True)
            for key, value in (config_map.data or {}).items():
                (folder / key).write_text(value)
            mounts[mount["mountPath"]] = folder
        return mounts

    def _outputs(self, leaf: dict[str, Any], node_id: str) -> dict[str, Path]:
        """The output artifact paths of a pod, each in a folder of that pod's own: {path in the pod: here}."""
        artifacts = (leaf.get("outputs") or {}).get("artifacts") or []
        return {a["path"]: self.workdir / "pods" / node_id / a["path"].lstrip("/") for a in artifacts}

    def _save_outputs(self, leaf: dict[str, Any], variables: dict[str, str], node_id: str, log: str) -> None:
        """Upload the output artifacts that exist and the log, as Argo's executor does at the end of a pod."""
        from argomlops.trainer.gcs_store import GCSStore

        local = self._outputs(leaf, node_id)
        for artifact in (leaf.get("outputs") or {}).get("artifacts") or []:
            found = local[artifact["path"]]
            if not found.exists():
                assert artifact.get("optional"), f"output {artifact['name']} of {node_id} is missing"
                continue
            gcs = artifact["gcs"]
            GCSStore(render(gcs["bucket"], variables)).upload_file(found, render(gcs["key"], variables))
        location = leaf.get("archiveLocation") or {}
        if location.get("archiveLogs"):
            key = render(location["gcs"]["key"], variables)
            GCSStore(render(location["gcs"]["bucket"], variables)).write_text(f"{key}/main.log", log)

    def _outputs_in(self, leaf: dict[str, Any], node_id: str) -> dict[str, Path]:
        """Each output parameter's `valueFrom.path` in the pod, and the local file standing for it."""
        outputs = (leaf.get("outputs") or {}).get("parameters") or []
        return {
            o["valueFrom"]["path"]: self.workdir / f"output-{node_id}-{o['name']}"
            for o in outputs
            if "path" in (o.get("valueFrom") or {})
        }

    def _collect_outputs(self, leaf: dict[str, Any], node_id: str) -> list[dict[str, str]]:
        """The pod's output parameters, read when it ended (`default` where the file is missing)."""
        files = self._outputs_in(leaf, node_id)
        collected = []
        for output in (leaf.get("outputs") or {}).get("parameters") or []:
            source = output.get("valueFrom") or {}
            local = files.get(source.get("path", ""))
            value = local.read_text() if local is not None and local.exists() else source.get("default")
            if value is not None:
                collected.append({"name": output["name"], "value": value})
        return collected

    def _command(
        self, leaf: dict[str, Any], variables: dict[str, str], node_id: str
    ) -> tuple[list[str], dict[str, str]]:
        container = leaf["container"]
        mounts = self._materialise_config(leaf, variables, node_id)
        argv = [render(part, variables) for part in [*container.get("command", []), *container.get("args", [])]]
        for index, part in enumerate(argv):
            for mount_path, folder in mounts.items():
                if part.startswith(mount_path + "/"):
                    argv[index] = str(folder) + part[len(mount_path) :]
        if argv[0] == "argomlops":
            argv[0] = executable("argomlops")
        env = {e["name"]: render(e.get("value", ""), variables) for e in container.get("env", [])}
        # Paths in the pod that env values name (output parameters and artifacts) point at the pod's files here,
        # and so do paths in its volumes (TMPDIR, HOME, ARGOMLOPS_CACHE on the emptyDirs).
        outputs = {**self._outputs_in(leaf, node_id), **self._outputs(leaf, node_id)}
        env = {key: str(outputs[value]) if value in outputs else _in(mounts, value) for key, value in env.items()}
        return argv, env

    def _run_task(
        self,
        workflow_name: str,
        task: str,
        leaf: dict[str, Any],
        variables: dict[str, str],
        params: dict[str, str],
        deadline: float,
    ) -> str:
        strategy = leaf.get("retryStrategy", {})
        limit = int(render(str(strategy.get("limit", "0")), variables))
        retry_id = f"{task}-retry"
        self.nodes[retry_id] = {
            "id": retry_id,
            "name": f"{workflow_name}.{task}",
            "displayName": task,
            "type": "Retry",
            "templateName": leaf["name"],
            "phase": "Running",
            "startedAt": _now(),
            "children": [],
        }
        for number in range(limit + 1):
            node_id = f"{task}-{number}"
            self.nodes[retry_id]["children"].append(node_id)
            attempt = self._run_pod(workflow_name, task, number, node_id, leaf, variables, deadline)
            self.attempts.append(attempt)
            node = self.nodes[node_id]
            if attempt.exit_code == 0:
                self.nodes[retry_id].update(phase="Succeeded", finishedAt=_now())
                self._patch(workflow_name, phase="Running")
                return "Succeeded"
            if attempt.stopped:  # nothing is retried while the Workflow shuts down
                self.nodes[retry_id].update(phase=node["phase"], finishedAt=_now(), message=STOPPED_MESSAGE)
                return "Failed"
            expression = strategy.get("expression")
            retry = bool(expression) and should_retry(
                expression, attempt.exit_code, node["phase"], node.get("message", "")
            )
            if not retry or number == limit:
                reason = "" if retry else " (retry expression false)"
                self.nodes[retry_id].update(phase="Failed", finishedAt=_now(), message=node.get("message", "") + reason)
                return "Failed"
            self._patch(workflow_name, phase="Running")
        raise AssertionError("unreachable")

    def _run_pod(
        self,
        workflow_name: str,
        task: str,
        number: int,
        node_id: str,
        leaf: dict[str, Any],
        variables: dict[str, str],
        deadline: float,
    ) -> Attempt:
        variables = {**variables, "pod.name": f"{workflow_name}-{task}-{number}"}
        argv, container_env = self._command(leaf, variables, node_id)
        progress_file = self.workdir / f"progress-{node_id}"
        progress_file.unlink(missing_ok=True)
        # The test's env (the GCS emulator, a data cache built once for the session) is laid over the pod's.
        env = {**os.environ, **container_env, **self.env, "ARGO_PROGRESS_FILE": str(progress_file)}
        node: dict[str, Any] = {
            "id": node_id,
            "name": f"{workflow_name}.{task}({number})",
            "displayName": f"{task}({number})",
            "type": "Pod",
            "templateName": leaf["name"],
            "phase": "Running",
            "startedAt": _now(),
        }
        self.nodes[node_id] = node
        self._patch(workflow_name, phase="Running")
        log_path = self.workdir / f"log-{node_id}.txt"
        with log_path.open("w") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            sigterm_progress: str | None = None
            stopped_at: float | None = None
            while process.poll() is None:
                if time.monotonic() > deadline:
                    process.kill()
                    raise AssertionError(f"{task}({number}) ran past the test's deadline; log: {log_path}")
                if stopped_at is None and self._shutdown(workflow_name):
                    # Argo: SIGTERM to the container now, the node Failed at once, SIGKILL after the grace period.
                    stopped_at = time.monotonic()
                    sigterm_progress = sigterm_progress or node.get("progress")
                    process.send_signal(signal.SIGTERM)
                    node.update(phase="Failed", message=SHUTDOWN_NODE_MESSAGE)
                    self._patch(workflow_name, phase="Running")
                elif stopped_at is not None and time.monotonic() - stopped_at > self._grace(workflow_name):
                    process.kill()
                progress = progress_file.read_text().strip() if progress_file.exists() else ""
                if progress and progress != node.get("progress"):
                    node["progress"] = progress
                    self._patch(workflow_name, phase="Running")
                    if stopped_at is None and sigterm_progress is None and self.preemptions.due(progress):
                        sigterm_progress = progress
                        process.send_signal(signal.SIGTERM)
                        self.preemptions.done += 1
                time.sleep(0.1)
        output = log_path.read_text()
        self._save_outputs(leaf, variables, node_id, output)
        code = process.returncode
        stopped = stopped_at is not None
        preempted = sigterm_progress is not None and not stopped
        # The wait container reports the outputs whatever the exit code; then the node is fulfilled.
        # (A node marked Failed by the shutdown is fulfilled, and gets its finishedAt, only now.)
        node.update(outputs={"exitCode": str(code), "parameters": self._collect_outputs(leaf, node_id)})
        node["finishedAt"] = _now()
        if progress_file.exists():
            node["progress"] = progress_file.read_text().strip()
        if code == 0:
            node["phase"] = "Succeeded"
        else:
            node["phase"] = "Failed"
            tail = "\n".join(output.rstrip().splitlines()[-LOG_TAIL_LINES:])[-2048:]
            node["message"] = PREEMPTED_MESSAGE if preempted else tail
        self._patch(workflow_name, phase="Running")
        return Attempt(task, number, code, preempted, output, sigterm_progress, stopped)

    def _grace(self, workflow_name: str) -> float:
        """The pods' terminationGracePeriodSeconds (the Workflow's podSpecPatch), else Kubernetes' default."""
        workflow = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "workflows", workflow_name)
        patch = json.loads((workflow.get("spec") or {}).get("podSpecPatch") or "{}")
        return float(patch.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))


class StatusRecorder(threading.Thread):
    """Polls an MLOps object's status in the background and keeps every distinct phase it saw, in order."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.read = read
        self.phases: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                status = self.read().get("status") or {}
            except Exception:  # the server may be busy: the next poll sees the same state
                status = {}
            phase = status.get("phase")
            if phase and (not self.phases or self.phases[-1] != phase):
                self.phases.append(phase)
            if status:
                self.statuses.append(status)
            self._stop_event.wait(0.05)

    def stop(self) -> None:
        """Stop polling."""
        self._stop_event.set()
        self.join(timeout=5)


def _in(mounts: dict[str, Path], path: str) -> str:
    """A path in the pod as the folder standing for its volume here (unchanged when in no volume)."""
    for mount_path, folder in mounts.items():
        if path == mount_path or path.startswith(mount_path + "/"):
            return str(folder) + path[len(mount_path) :]
    return path
