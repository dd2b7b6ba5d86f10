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

ERROR_BODY = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": ERROR_BODY}}

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
    "properties": {"job_id": {"type": "string"}, "error": ERROR_BODY},
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
        "error": ERROR_BODY,
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
        "error": {"oneOf": [{"type": "null"}, ERROR_BODY]},
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


def error_response(description: str) -> dict[str, Any]:
    """A response whose body is the ``Error`` schema (``_dashboard_openapi`` uses it too)."""
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
            "/v1/jobs": {"post": _submit_jobs()},
            "/v1/jobs/{job_id}": {"get": _get_job(), "delete": _cancel_job()},
            "/v1/jobs/{job_id}/events": {"get": _get_job_events()},
            "/v1/jobs/{job_id}/stream": {"get": _stream_job()},
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


def _submit_jobs() -> dict[str, Any]:
    """``POST /v1/jobs``: one job, or a batch of up to 1000."""
    batch = {"type": "object", "required": ["jobs"], "additionalProperties": False,
             "properties": {"jobs": {"type": "array", "minItems": 1, "maxItems": 1000,
                                     "items": {"$ref": "#/components/schemas/JobRequest"}}}}
    answers = {"type": "object", "required": ["jobs"], "properties": {"jobs": {
        "type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/Accepted"}, _REFUSED_ENTRY]}}}}
    return {
        "operationId": "submitJobs",
        "summary": "Submit one job, or a batch ({\"jobs\": [...]})",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": _KEY}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/JobRequest"}, batch,
            ]}}},
        },
        "responses": {
            "202": _json({"oneOf": [{"$ref": "#/components/schemas/Accepted"}, answers]},
                         "Durable in the ledger: the job (or, for a batch, each job in order)"),
            "400": error_response("Malformed request; nothing was submitted"),
            "409": error_response("idempotency_conflict: the key was used for another URL"),
            "413": error_response("body_too_large"),
            "503": error_response("unavailable or draining: retry (safe with an idempotency key)"),
        },
    }


def _get_job() -> dict[str, Any]:
    """``GET /v1/jobs/{job_id}``, optionally waiting for the job to finish."""
    wait = {"name": "wait", "in": "query", "required": False,
            "schema": {"type": "number", "minimum": 0, "maximum": 60},
            "description": "hold the request until the job finishes or S seconds pass"}
    return {
        "operationId": "getJob",
        "summary": "The job's state and, when finished, its result",
        "parameters": [_JOB_ID, wait],
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Job"}, "The job"),
            "400": error_response("invalid_wait"),
            "404": error_response("unknown_job"),
            "503": error_response("unavailable"),
        },
    }


def _cancel_job() -> dict[str, Any]:
    """``DELETE /v1/jobs/{job_id}``."""
    cancelled = {"type": "object", "required": ["job_id", "status"], "properties": {
        "job_id": {"type": "string"}, "status": {"const": "cancelled"}}}
    return {
        "operationId": "cancelJob",
        "summary": "Cancel the job",
        "parameters": [_JOB_ID],
        "responses": {
            "200": _json(cancelled, "Cancelled (also when it already was)"),
            "404": error_response("unknown_job"),
            "409": error_response("already_finished: nothing changed"),
            "503": error_response("unavailable"),
        },
    }


def _get_job_events() -> dict[str, Any]:
    """``GET /v1/jobs/{job_id}/events``: the job's ledger history."""
    history = {"type": "object", "required": ["job_id", "events"], "properties": {
        "job_id": {"type": "string"},
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
    }}
    return {
        "operationId": "getJobEvents",
        "summary": "The job's ledger history",
        "parameters": [_JOB_ID],
        "responses": {
            "200": _json(history, "Every event of the job, in ledger order"),
            "404": error_response("unknown_job"),
            "503": error_response("unavailable"),
        },
    }


def _stream_job() -> dict[str, Any]:
    """``GET /v1/jobs/{job_id}/stream``: Server-Sent Events, resumable with ``Last-Event-ID``."""
    last_event_id = {"name": "Last-Event-ID", "in": "header", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9]+$"},
                     "description": "resume after this event (any pod)"}
    event = {
        "type": "object", "required": ["event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"enum": ["transition", "result"]},
            "data": {"type": "string", "description": "JSON: an /events record (transition) or the result"},
        },
    }
    return {
        "operationId": "streamJob",
        "summary": "Server-Sent Events: a `transition` per ledger event, then `result`",
        "parameters": [_JOB_ID, last_event_id],
        "responses": {
            "200": {"description": "The event stream; ids are ledger offsets",
                    "content": {"text/event-stream": {"schema": event}}},
            "400": error_response("invalid_last_event_id"),
            "404": error_response("unknown_job"),
            "503": error_response("unavailable"),
        },
    }
