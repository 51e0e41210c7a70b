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

See tests/kube/server.py for what the server does and does not do.
"""
