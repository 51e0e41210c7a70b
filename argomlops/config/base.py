"""What every config section shares: strict camelCase models, URI checks, and errors that name their field."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

CROSS_FIELD_ERROR = "cross_field"
"""The error type of a rule over several fields; its context's `field` is the one to blame."""
SECRET_ERROR = "holds_secret"
"""The error type of a value refused because it holds a secret: the error line never shows the value."""

_GS_URI = re.compile(r"^(gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?|[^:]*)$")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, camelCase aliases, assignment validated."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        validate_assignment=True,
        frozen=False,
    )


def blame(field: str, message: str) -> PydanticCustomError:
    """An error of a cross-field rule that names `field` (camelCase, relative to the section) as the culprit.

    `error_lines` puts the field into the reported path, so the message says only what is wrong.
    """
    # The template only names the context's message: pydantic fills in {placeholders} from the context,
    # so text of the message itself (a dict's braces) is never taken for one.
    return PydanticCustomError(CROSS_FIELD_ERROR, "{message}", {"field": field, "message": message})


def check_uri(value: str | None, what: str) -> str | None:
    """A local path or gs://bucket/prefix without its trailing slash; ValueError naming `what` otherwise."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"{what} must not be empty")
    if "://" in value and not value.startswith("gs://"):
        raise ValueError(f"{what} must be a local path or gs://bucket/prefix, got {value!r}")
    if not _GS_URI.match(value):
        raise ValueError(f"{what} is not a valid gs://bucket/prefix: {value!r}")
    return value.rstrip("/") if value not in ("/",) else value
