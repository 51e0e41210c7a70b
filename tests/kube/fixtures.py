"""Pytest fixtures that start the test Kubernetes API server (see tests/kube/__init__.py for the API)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import kmock
import pytest
import yaml

from kube.server import KubeServer

T = TypeVar("T")


class RunningKube:
    """A `KubeServer` serving on 127.0.0.1 from its own thread, plus a kubeconfig for it."""

    def __init__(self, directory: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kube-api", daemon=True)
        self.thread.start()
        self.server, self._http = self._run(self._start())
        self.url = f"http://127.0.0.1:{self._http.port}"
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(self.url)))

    async def _start(self) -> tuple[KubeServer, kmock.Server]:
        server = KubeServer()
        await server.__aenter__()
        http = kmock.Server(server)
        await http.__aenter__()
        return server, http

    async def _stop(self) -> None:
        self.server.close_watches()
        await asyncio.sleep(0.05)
        await self._http.__aexit__(None, None, None)
        await self.server.__aexit__(None, None, None)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the server's loop (the store is not thread-safe) and return its result."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except Exception as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored objects of a plural, optionally in one namespace."""
        return self.call(self.server.objects, plural, namespace)

    def api(self) -> Any:
        """A `kubernetes.client.ApiClient` for this server."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    def stop(self) -> None:
        """Close the watches and the socket, then the loop."""
        self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def kubeconfig_for(url: str) -> dict[str, Any]:
    """A kubeconfig with one context for an API server at `url` (no authentication)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}],
        "current-context": "test",
    }


@pytest.fixture()
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningKube]:
    """A fresh test API server, with KUBECONFIG pointing at it for the test."""
    running = RunningKube(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
    try:
        yield running
    finally:
        running.stop()


TRAINER_IMAGE = "registry.example/argomlops-trainer:0.1.0"
"""The operator's default trainer image in tests (what the chart's trainer.image gives it)."""


@pytest.fixture()
def operator_runner(kube: RunningKube) -> Callable[..., Any]:
    """A factory of `KopfRunner`s running the argomlops operator standalone against `kube`.

    The operator is given `TRAINER_IMAGE` as its default trainer image, as the chart gives it one;
    `env={"ARGOMLOPS_TRAINER_IMAGE": ""}` runs it without.
    """
    from kopf.testing import KopfRunner

    def make(args: tuple[str, ...] = ("--all-namespaces",), env: dict[str, str] | None = None) -> KopfRunner:
        argv = ["run", "--standalone", "-m", "argomlops.operator.handlers", *args]
        return KopfRunner(argv, env={"ARGOMLOPS_TRAINER_IMAGE": TRAINER_IMAGE, **(env or {})})

    return make


def eventually(check: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns a truthy value (returned) or raises nothing; fail after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as exc:
            last = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s: {last or check}")


def replace_mlops_spec(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Replace an MLOps object's spec (what `kubectl apply` of a changed manifest does) and return the object.

    The operator patches the object (status, kopf's annotations) between our read and our replace; a 409
    then means "read again and retry", as client-go's RetryOnConflict does.
    """
    import copy

    import kubernetes

    for _ in range(10):
        current = custom.get_namespaced_custom_object("argomlops.dev", "v1alpha1", namespace, "mlops", name)
        current["spec"] = copy.deepcopy(spec)
        try:
            replaced: dict[str, Any] = custom.replace_namespaced_custom_object(
                "argomlops.dev", "v1alpha1", namespace, "mlops", name, current
            )
            return replaced
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError(f"{namespace}/{name}: still conflicting after 10 tries")
