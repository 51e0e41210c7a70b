"""Server-side tables for `kubectl get`, with the columns of a CRD's additionalPrinterColumns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kube.kinds import Kind
from kube.label_selectors import field_value


@dataclass
class Tables:
    """The printer columns known per resource, and the Tables made with them."""

    #: (group, version, plural) → the CRD's additionalPrinterColumns.
    columns: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, group: str, version: str, plural: str, columns: list[dict[str, Any]]) -> None:
        """Serve tables of a resource with these printer columns."""
        self.columns[(group, version, plural)] = columns

    def learn(self, kind: Kind, event: str, obj: dict[str, Any]) -> None:
        """Take the printer columns of a created or changed CRD (a store listener)."""
        # A real API server serves tables of a custom resource as soon as its CRD is stored; so does this.
        if event == "DELETED" or obj.get("kind") != "CustomResourceDefinition":
            return
        spec = obj.get("spec") or {}
        for version in spec.get("versions") or []:
            columns = version.get("additionalPrinterColumns")
            if columns:
                plural = (spec.get("names") or {}).get("plural", "")
                self.add(spec.get("group", ""), version.get("name", ""), plural, columns)

    def table_of(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The Table of a list or object of this kind, or None where the kind has no printer columns."""
        columns = self.columns.get((kind.group, kind.version, kind.plural))
        return table(payload, columns) if columns else None


def table(payload: dict[str, Any], columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of a list or one object, with Name first and the CRD's columns."""
    objs = payload.get("items", [payload])
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": "",
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objs:
        cells: list[Any] = [obj["metadata"]["name"]]
        for column in columns:
            value = field_value(obj, column["jsonPath"].lstrip("."))
            if column["name"] == "Age" and value:
                # kubectl prints cells as given; the server renders ages as a real one does.
                created = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                seconds = int((datetime.now(UTC) - created).total_seconds())
                value = f"{seconds // 60}m" if seconds >= 120 else f"{seconds}s"
            cells.append(value)
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "metadata": obj["metadata"]}})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": payload["metadata"].get("resourceVersion", "")},
        "columnDefinitions": definitions,
        "rows": rows,
    }
