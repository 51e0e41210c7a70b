"""The resources the test API server serves: `Kind`, the default set, and finding one by its URL parts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kube.errors import ApiError


@dataclass(frozen=True)
class Kind:
    """One served resource: where it lives and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """The apiVersion written into objects of this kind."""
        return f"{self.group}/{self.version}" if self.group else self.version


#: What the argomlops operator, kopf and kubectl touch.
DEFAULT_KINDS = (
    Kind("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    Kind("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "events", "Event", short_names=("ev",)),
    Kind("", "v1", "pods", "Pod", status_subresource=True, short_names=("po",)),
    Kind("argomlops.dev", "v1alpha1", "mlops", "MLOps", status_subresource=True, short_names=("mlo",)),
    Kind("argomlops.dev", "v1alpha1", "mlopssweeps", "MLOpsSweep", status_subresource=True, short_names=("mlsw",)),
    Kind("argoproj.io", "v1alpha1", "workflows", "Workflow", short_names=("wf",)),
    Kind("argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate", short_names=("wftmpl",)),
    Kind("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
    Kind("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False),
)


def find_kind(kinds: Iterable[Kind], group: str, version: str, plural: str) -> Kind:
    """Return the kind of these served ones at this group/version/plural, or raise ApiError 404."""
    for kind in kinds:
        if (kind.group, kind.version, kind.plural) == (group, version, plural):
            return kind
    raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{plural})")
