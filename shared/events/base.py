"""Base class of every event data model, and the error helper for cross-field checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = ["EventData", "field_error"]


class EventData(BaseModel):
    """Strict, immutable event payload: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_error(field: str, message: str) -> PydanticCustomError:
    """Error for a model-level check; `field` in the context lets `parse_event` name the field.

    (A model validator's errors have no location of their own.)
    """
    return PydanticCustomError("cross_field", message, {"field": field})
