"""The JSON Schemas in `schemas/`: the contract for every value on storemon's topics.

They are read as package data of `storemon.schemas` (the repository's `schemas/` folder,
installed with the package), never by a path into a checkout.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

#: The package whose data files are the schemas and the OpenAPI document.
SCHEMAS_PACKAGE = "storemon.schemas"
OPENAPI_DOCUMENT = "openapi.json"

STATUS_OBSERVATION = "status-observation"
STATUS_BATCH = "status-batch"
STATUS_PARTITION_BATCH = "status-partition-batch"
STORE_HOURS = "store-hours"
STORE_TIMEZONE = "store-timezone"
REPORT_REQUEST = "report-request"
REPORT_TASK = "report-task"
REPORT_EVENT = "report-event"
DLQ_RECORD = "dlq-record"
ALL_SCHEMAS = (
    STATUS_OBSERVATION,
    STATUS_BATCH,
    STATUS_PARTITION_BATCH,
    STORE_HOURS,
    STORE_TIMEZONE,
    REPORT_REQUEST,
    REPORT_TASK,
    REPORT_EVENT,
    DLQ_RECORD,
)


def _read_json(file_name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        resources.files(SCHEMAS_PACKAGE).joinpath(file_name).read_text(encoding="utf-8")
    )
    return document


def _load(name: str) -> dict[str, Any]:
    return _read_json(f"{name}.schema.json")


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (`schemas/openapi.json`), a fresh copy each call."""
    return _read_json(OPENAPI_DOCUMENT)


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


_REQUIRED_MESSAGE = re.compile(r"'(.+)' is a required property")


def schema_errors(name: str, value: Any) -> list[str]:
    """Every way `value` breaks schema `name`, as 'field: reason' strings (empty when valid)."""
    messages = []
    for error in sorted(validator(name).iter_errors(value), key=lambda e: list(e.path)):
        path = [str(part) for part in error.path]
        message = error.message
        if error.validator == "required":
            # Name the missing field itself, not the object that lacks it: the error is one
            # per missing field, and its message names it ("'x' is a required property").
            missing = _REQUIRED_MESSAGE.fullmatch(error.message)
            if missing is not None:
                path, message = [*path, missing.group(1)], "is required"
        messages.append(f"{'.'.join(path) or '(record)'}: {message}")
    return sorted(messages)
