"""One human-readable line per problem of a config: `path: what is wrong (got value)`."""

from __future__ import annotations

from pydantic import ValidationError

from argomlops.config.base import CROSS_FIELD_ERROR, SECRET_ERROR


class ConfigError(ValueError):
    """A config that cannot be used; `lines` has one human-readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _path_of(loc: tuple[int | str, ...]) -> str:
    """The dotted path of an error location, each key as the user wrote it (`data.image_size` stays so)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item.startswith("function-"):  # function-after, function-before: validator steps, not fields
            continue
        else:
            parts.append(item)
    return ".".join(parts)


def error_lines(error: ValidationError) -> list[str]:
    """One line per bad field: `path: what is wrong (got value)`."""
    lines = []
    for item in error.errors(include_url=False):
        path = _path_of(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == CROSS_FIELD_ERROR:
            # A rule over several fields blames one of them (relative to the section it validates).
            blamed = str((item.get("ctx") or {}).get("field", ""))
            path = ".".join(p for p in (path, blamed) if p)
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "literal_error":
            message = message.replace("Input should be", "must be")
        got = item.get("input")
        # Validators that already quote the value need no second copy of it; a value holding a secret none.
        silent = ("missing", CROSS_FIELD_ERROR, SECRET_ERROR)
        quiet = isinstance(got, dict) or item["type"] in silent or repr(got) in message
        shown = "" if quiet else f" (got {got!r})"
        lines.append(f"{path or '(top level)'}: {message}{shown}")
    return lines
