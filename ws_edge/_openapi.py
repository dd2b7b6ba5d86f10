"""The HTTP API's contract as an OpenAPI 3.1 document (served at ``/openapi.json``).

Written by hand next to the handlers (``_http``) rather than generated: it is the contract
(docs/api.md says the same in prose), and the schemathesis test checks every response of the
live edge against it.
"""

from __future__ import annotations

from typing import Any

from ._protocol import MAX_FORMATS, MAX_IDEMPOTENCY_KEY_CHARS, MAX_URL_CHARS

STATUSES = ["unknown", "submitted", "validated", "retrying", "redriven", "succeeded", "rejected",
            "failed", "dead_lettered", "expired", "cancelled"]

_ERROR_BODY = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": _ERROR_BODY}}

_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS, "pattern": "^[!-~]+$"}

_JOB_REQUEST = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_CHARS, "pattern": "[!-~]",
                "description": "http(s) URL to fetch"},
        "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "timeout_s": {"type": ["number", "null"], "description": "fetch timeout, (0, 120] seconds"},
        "proxy": {"type": ["string", "null"], "description": "an http:// or https:// proxy URL"},
        "idempotency_key": {"oneOf": [{"type": "null"}, _KEY],
                            "description": "the same key from the same owner names the same job"},
        "ref": {"type": ["string", "number", "null"], "description": "echoed back"},
        "formats": {"oneOf": [{"type": "null"}, {"type": "string"},
                              {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FORMATS}],
                    "description": "any of html (default), markdown, text, links, metadata; the "
                    "result carries a field of each name (unknown names: the job is rejected)"},
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["job_id", "status"],
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "ref": {"type": ["string", "number"]},
    },
}

_REFUSED_ENTRY = {
    "type": "object",
    "required": ["job_id", "error"],
    "properties": {"job_id": {"type": "string"}, "error": _ERROR_BODY},
}

_RESULT = {
    "type": "object",
    "description": "The WebSocket result frame's fields (without 'event').",
    "required": ["job_id", "status", "url", "attempts"],
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "url": {"type": "string"},
        "attempts": {"type": "integer"},
        "final_url": {"type": "string"},
        "http_status": {"type": "integer"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "html": {"type": "string"},
        "elapsed_ms": {"type": "number"},
        "truncated": {"type": "boolean"},
        "error": _ERROR_BODY,
    },
    "additionalProperties": True,
}

_JOB = {
    "type": "object",
    "required": ["job_id", "status", "url", "attempts", "submitted_at", "updated_at", "finished_at",
                 "error", "result"],
    "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": STATUSES},
        "url": {"type": "string"},
        "attempts": {"type": "integer"},
        "submitted_at": {"type": ["number", "null"]},
        "updated_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "error": {"oneOf": [{"type": "null"}, _ERROR_BODY]},
        "result": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Result"}]},
    },
}

_EVENT = {
    "type": "object",
    "description": "One ledger event, as `scrapeledger replay history --json` prints it.",
    "required": ["event_id", "job_id", "type", "v", "at", "source", "attempt", "payload"],
    "properties": {
        "event_id": {"type": "string"},
        "job_id": {"type": "string"},
        "type": {"type": "string"},
        "v": {"type": "integer"},
        "at": {"type": "number"},
        "source": {"type": "string"},
        "attempt": {"type": "integer"},
        "payload": {"type": "object"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


_JOB_ID = {
    "name": "job_id", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22,64}$"},
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the HTTP API (with the dashboard's reads)."""
    from ._dashboard_openapi import extend

    return extend({
        "openapi": "3.1.0",
        "info": {
            "title": "Scrapeledger",
            "version": "1",
            "description": "Scrape jobs over HTTP: submit, read, wait for, stream and cancel them. "
            "Every transition is an event in a Kafka ledger. See docs/api.md.",
        },
        "paths": {
            "/v1/jobs": {
                "post": {
                    "operationId": "submitJobs",
                    "summary": "Submit one job, or a batch ({\"jobs\": [...]})",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": _KEY}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"oneOf": [
                            {"$ref": "#/components/schemas/JobRequest"},
                            {"type": "object", "required": ["jobs"], "additionalProperties": False,
                             "properties": {"jobs": {"type": "array", "minItems": 1, "maxItems": 1000,
                                                     "items": {"$ref": "#/components/schemas/JobRequest"}}}},
                        ]}}},
                    },
                    "responses": {
                        "202": _json({"oneOf": [
                            {"$ref": "#/components/schemas/Accepted"},
                            {"type": "object", "required": ["jobs"], "properties": {"jobs": {
                                "type": "array", "items": {"oneOf": [
                                    {"$ref": "#/components/schemas/Accepted"}, _REFUSED_ENTRY]}}}},
                        ]}, "Durable in the ledger: the job (or, for a batch, each job in order)"),
                        "400": _error("Malformed request; nothing was submitted"),
                        "409": _error("idempotency_conflict: the key was used for another URL"),
                        "413": _error("body_too_large"),
                        "503": _error("unavailable or draining: retry (safe with an idempotency key)"),
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "The job's state and, when finished, its result",
                    "parameters": [
                        _JOB_ID,
                        {"name": "wait", "in": "query", "required": False,
                         "schema": {"type": "number", "minimum": 0, "maximum": 60},
                         "description": "hold the request until the job finishes or S seconds pass"},
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Job"}, "The job"),
                        "400": _error("invalid_wait"),
                        "404": _error("unknown_job"),
                        "503": _error("unavailable"),
                    },
                },
                "delete": {
                    "operationId": "cancelJob",
                    "summary": "Cancel the job",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _json({"type": "object", "required": ["job_id", "status"], "properties": {
                            "job_id": {"type": "string"}, "status": {"const": "cancelled"}}},
                            "Cancelled (also when it already was)"),
                        "404": _error("unknown_job"),
                        "409": _error("already_finished: nothing changed"),
                        "503": _error("unavailable"),
                    },
                },
            },
            "/v1/jobs/{job_id}/events": {
                "get": {
                    "operationId": "getJobEvents",
                    "summary": "The job's ledger history",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _json({"type": "object", "required": ["job_id", "events"], "properties": {
                            "job_id": {"type": "string"},
                            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                        }}, "Every event of the job, in ledger order"),
                        "404": _error("unknown_job"),
                        "503": _error("unavailable"),
                    },
                }
            },
            "/v1/jobs/{job_id}/stream": {
                "get": {
                    "operationId": "streamJob",
                    "summary": "Server-Sent Events: a `transition` per ledger event, then `result`",
                    "parameters": [
                        _JOB_ID,
                        {"name": "Last-Event-ID", "in": "header", "required": False,
                         "schema": {"type": "string", "pattern": "^[0-9]+$"},
                         "description": "resume after this event (any pod)"},
                    ],
                    "responses": {
                        "200": {"description": "The event stream; ids are ledger offsets",
                                "content": {"text/event-stream": {"schema": {
                                    "type": "object", "required": ["event", "data"],
                                    "properties": {
                                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                                        "event": {"enum": ["transition", "result"]},
                                        "data": {"type": "string", "description": "JSON: an /events "
                                                 "record (transition) or the result"}}}}}},
                        "400": _error("invalid_last_event_id"),
                        "404": _error("unknown_job"),
                        "503": _error("unavailable"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "JobRequest": _JOB_REQUEST,
                "Accepted": _ACCEPTED,
                "Job": _JOB,
                "Result": _RESULT,
                "Event": _EVENT,
            }
        },
    })
