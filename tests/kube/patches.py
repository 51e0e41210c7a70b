"""PATCH bodies: RFC 7386 merge patch, strategic merge patch (served as a merge patch), RFC 6902 JSON patch."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

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


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Return a copy of `target` with RFC 6902 JSON patch `ops` applied; ApiError 422 when an op fails or is invalid."""
    try:
        result = jsonpatch.apply_patch(target, ops)
    except jsonpatch.JsonPatchTestFailed as exc:
        # kopf puts a `test` of metadata.resourceVersion first and takes a 422 as "changed meanwhile, retry".
        raise ApiError(422, "Invalid", f"JSON patch test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        # Invalid ops and ops whose path does not resolve are both the client's error, as on a real server.
        raise ApiError(422, "Invalid", f"JSON patch does not apply: {exc}") from exc
    if not isinstance(result, dict):
        # An op on the root path "" could replace the object with a scalar or a list.
        raise ApiError(422, "Invalid", "JSON patch does not leave an object")
    return result


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
