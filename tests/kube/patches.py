"""PATCH bodies: RFC 7386 merge patch, strategic merge patch (served as a merge patch), RFC 6902 JSON patch."""

from __future__ import annotations

import copy
from typing import Any

from kube.errors import ApiError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with an RFC 7386 JSON merge patch applied: dicts merge, `null` deletes, the rest replaces."""
    # Written here rather than taken from a library: the RFC's whole algorithm is these lines, and the one
    # package for it (json-merge-patch) is a small, rarely released one that would add nothing to them.
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON patch (add, remove, replace, test); a failed op raises ApiError 422."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            last = parts[-1] if parts else ""
            if op["op"] == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if current != op.get("value"):
                    raise ApiError(422, "Invalid", f"test failed at {op['path']}: {current!r} != {op.get('value')!r}")
            elif op["op"] == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif op["op"] in ("add", "replace"):
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(op["value"])
                    elif op["op"] == "add":
                        parent.insert(int(last), op["value"])
                    else:
                        parent[int(last)] = op["value"]
                else:
                    parent[last] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"JSON patch {op!r} does not apply: {exc!r}") from exc
    return doc


def apply_patch(old: dict[str, Any], content_type: str, body: Any) -> dict[str, Any]:
    """Return `old` patched by a PATCH body of this Content-Type; ApiError 400/415/422 when it cannot be."""
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
        return json_patch(old, body)
    if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        # Strategic merge is served as a plain merge: lists are replaced, never merged by key.
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
        result: dict[str, Any] = merge_patch(old, body)
        return result
    raise ApiError(415, "UnsupportedMediaType", f"patch type {content_type!r} is not served")
