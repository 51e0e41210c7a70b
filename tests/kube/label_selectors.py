"""Label and field selectors of list and watch requests (`labelSelector=`, `fieldSelector=`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: One label requirement: (key, operator, values), the operator one of = != in notin exists !.
Requirement = tuple[str, str, set[str]]


def parse_label_selector(text: str) -> list[Requirement]:
    """`a=b,c!=d,e,!f,g in (x,y)` → (key, operator, values) requirements."""
    requirements: list[Requirement] = []
    # Commas split requirements except inside the parentheses of `in (x,y)` / `notin (x,y)`.
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        part = part.strip()
        if not part:
            continue
        if match := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part):
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            requirements.append((match.group(1), match.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", {value.strip()}))
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            requirements.append((key.strip(), "=", {value.strip()}))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "!", set()))
        else:
            requirements.append((part, "exists", set()))
    return requirements


def labels_match(labels: dict[str, str], requirements: list[Requirement]) -> bool:
    """Whether an object's labels meet every requirement of a parsed selector."""
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "in": present and value in values,
            "!=": not present or value not in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True


def field_value(obj: dict[str, Any], path: str) -> Any:
    """The value at a dotted path such as `metadata.name` in an object, or None where a part is missing."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass
class Selector:
    """The label and field selectors of one request, callable on an object."""

    labels: list[Requirement]
    #: (dotted path, negated, value) for `path=value` / `path!=value`.
    fields: list[tuple[str, bool, str]]

    @classmethod
    def of(cls, params: dict[str, str]) -> Selector:
        """The selector of a request's query parameters (no selector matches everything)."""
        fields = []
        for part in filter(None, params.get("fieldSelector", "").split(",")):
            negate = "!=" in part
            key, value = part.split("!=" if negate else ("==" if "==" in part else "="), 1)
            fields.append((key.strip(), negate, value.strip()))
        return cls(parse_label_selector(params.get("labelSelector", "")), fields)

    def __call__(self, obj: dict[str, Any]) -> bool:
        """Whether the object meets every label and field requirement."""
        if not labels_match(obj.get("metadata", {}).get("labels") or {}, self.labels):
            return False
        return all((str(field_value(obj, key)) == value) != negate for key, negate, value in self.fields)
