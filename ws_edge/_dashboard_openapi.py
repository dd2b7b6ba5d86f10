"""The dashboard's reads in the OpenAPI document: ``GET /v1/jobs`` (the list) and
``GET /v1/stats``, added to the HTTP API's paths (``_openapi``).

Both always end (no endless stream an API checker would hang on), and every value their
parameters' schemas allow is a valid request: a cursor of the documented shape is a position,
whichever page handed it out."""

from __future__ import annotations

import copy
from typing import Any

from ._index import ACTIVE, CURSOR
from ._openapi import ERROR_BODY, STATUSES, error_response

_ONE = "|".join([*STATUSES, ACTIVE])


_NUM_OR_NULL = {"type": ["number", "null"]}

_SUMMARY = {
    "type": "object",
    "required": ["job_id", "url", "host", "status", "attempts", "submitted_at", "updated_at",
                 "finished_at", "duration_s", "error", "http_status", "events"],
    "properties": {
        "job_id": {"type": "string"},
        "url": {"type": "string"},
        "host": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "attempts": {"type": "integer"},
        "submitted_at": {"type": "number"},
        "updated_at": _NUM_OR_NULL,
        "finished_at": _NUM_OR_NULL,
        "duration_s": {**_NUM_OR_NULL, "description": "finished_at - submitted_at"},
        "error": {"oneOf": [{"type": "null"}, ERROR_BODY]},
        "http_status": {"type": ["integer", "null"]},
        "events": {"type": "integer", "description": "ledger events folded into this state"},
    },
}

_STATS = {
    "type": "object",
    "required": ["now", "bucket_s", "buckets", "counts", "in_flight", "indexed", "capacity", "version"],
    "properties": {
        "now": {"type": "number"},
        "bucket_s": {"type": "integer"},
        "buckets": {"type": "array", "description": "the last 15 minutes, oldest first", "items": {
            "type": "object", "required": ["t", "submitted", "finished"],
            "properties": {"t": {"type": "number"}, "submitted": {"type": "integer"},
                           "finished": {"type": "object", "additionalProperties": {"type": "integer"},
                                        "description": "jobs finished in the bucket, by terminal status"}}}},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                   "description": "jobs in the index by status now"},
        "in_flight": {"type": "integer"},
        "indexed": {"type": "integer"},
        "capacity": {"type": "integer"},
        "version": {"type": "integer",
                    "description": "changes seen by this pod; moves when anything changed"},
    },
}

_LIST = {
    "operationId": "listJobs",
    "summary": "Recent jobs, newest first, filtered and paged on the server",
    "parameters": [
        {"name": "status", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": f"^(|({_ONE})(,({_ONE}))*)$"},
         "description": f"comma-separated statuses ({', '.join(STATUSES)}) or {ACTIVE} (not finished); "
                        "empty or absent: all"},
        {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200},
         "description": "case-insensitive part of the job id or URL"},
        {"name": "cursor", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": f"^(|{CURSOR.pattern})$"},
         "description": "next_cursor of the previous page (empty or absent: the newest)"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    ],
    "responses": {
        "200": {"description": "One page", "content": {"application/json": {"schema": {
            "type": "object", "required": ["jobs", "next_cursor", "indexed", "capacity"],
            "properties": {
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
                "next_cursor": {"type": ["string", "null"]},
                "indexed": {"type": "integer"},
                "capacity": {"type": "integer"},
            }}}}},
        "400": error_response("invalid_status, invalid_query, invalid_cursor or invalid_limit"),
        "503": error_response("unavailable: the index is still being read or Kafka is away"),
    },
}

_PATHS = {
    "/v1/stats": {"get": {
        "operationId": "getStats",
        "summary": "The dashboard's counters",
        "responses": {
            "200": {"description": "Counters", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Stats"}}}},
            "503": error_response("unavailable"),
        },
    }},
}


def extend(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the dashboard's operations and schemas added."""
    doc = copy.deepcopy(doc)
    doc["paths"].setdefault("/v1/jobs", {})["get"] = _LIST
    doc["paths"].update(_PATHS)
    doc["components"]["schemas"].update({"JobSummary": _SUMMARY, "Stats": _STATS})
    return secured(doc)


def secured(doc: dict[str, Any]) -> dict[str, Any]:
    """API keys in the document: a bearer scheme, optional (``{}``: an edge with keys off takes
    requests without one), and on every operation the ``401`` a missing or wrong key gets; on the
    submit, the ``429`` of the key's limits. ``/openapi.json`` itself is always open."""
    doc["components"]["securitySchemes"] = {"apiKey": {
        "type": "http", "scheme": "bearer",
        "description": "With SCRAPELEDGER_API_KEYS set: Authorization: Bearer KEY. A key sees "
        "only its own jobs; another key's job answers exactly as an unknown id."}}
    doc["security"] = [{"apiKey": []}, {}]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            op["responses"].setdefault("401", error_response("unauthorized: no API key, or not a valid one"))
            if (path, method) == ("/v1/jobs", "post"):
                op["responses"].setdefault("429", {
                    **error_response("rate_limited: the API key's jobs in flight or submits per second"),
                    "headers": {"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                                                "description": "seconds"}}})
    return doc
