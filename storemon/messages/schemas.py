"""The JSON Schemas in `schemas/`: the contract for every value on storemon's topics."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from storemon.config import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "schemas"

STATUS_OBSERVATION = "status-observation"
STATUS_BATCH = "status-batch"
STORE_HOURS = "store-hours"
STORE_TIMEZONE = "store-timezone"
REPORT_REQUEST = "report-request"
DLQ_RECORD = "dlq-record"
ALL_SCHEMAS = (
    STATUS_OBSERVATION,
    STATUS_BATCH,
    STORE_HOURS,
    STORE_TIMEZONE,
    REPORT_REQUEST,
    DLQ_RECORD,
)


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return schema


@cache
def _registry() -> Registry:
    """Every schema by its $id, so one can $ref another (status-batch uses status-observation)."""
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in map(_load, ALL_SCHEMAS)
    )


@cache
def validator(name: str) -> Draft202012Validator:
    """A compiled validator for one schema (`name` without the `.schema.json` suffix)."""
    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(), format_checker=FormatChecker())


def schema_errors(name: str, value: Any) -> list[str]:
    """Every way `value` breaks schema `name`, as 'field: reason' strings (empty when valid)."""
    messages = []
    for error in sorted(validator(name).iter_errors(value), key=lambda e: list(e.path)):
        path = [str(part) for part in error.path]
        message = error.message
        if error.validator == "required":
            # Name the missing field itself, not the object that lacks it.
            missing = [f for f in error.validator_value if f not in error.instance]
            path, message = [*path, *missing[:1]], "is required"
        messages.append(f"{'.'.join(path) or '(record)'}: {message}")
    return messages
