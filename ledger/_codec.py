"""Wire format of ledger events: one orjson object per Kafka record, strictly decoded.

Every consumer of the ledger decodes through :func:`decode_event`, which turns anything that is
not a well-formed event of a known type and version into a typed :class:`EventError` and never
into a crash deep inside a processor. That is what lets a processor dead-letter a poison record
instead of looping on it.

Envelope on the wire::

    {"event_id": "...", "job_id": "...", "type": "JobSubmitted", "v": 1, "at": 1732840000.5,
     "source": "edge-0", "attempt": 0, "payload": {...}}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import orjson

from ._errors import MalformedEventError, UnknownEventTypeError, UnsupportedVersionError
from ._events import _ENVELOPE, EVENT_TYPES, Event, payload_of

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

def _no_sealed_credentials(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of the events that carry a fetch request: v2 added ``sealed`` (default None)."""
    return payload


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    (name, 1): _no_sealed_credentials
    for name in ("JobSubmitted", "JobValidated", "RetryScheduled", "JobRedriven")
}
"""``(type, old_version) -> function`` turning an old payload into the next version's payload.

A schema change adds its upcaster here and bumps the class's ``VERSION``, so old records in the
ledger stay readable forever. A purely additive field with a default (marked ``ADDED`` in
``_events.py``, like ``formats``) needs neither: old records decode to the default, and the
encoder omits the field while it holds it, so old readers still read events that do not use it.
"""


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "job_id": event.job_id,
        "type": event.TYPE,
        "v": event.VERSION,
        "at": event.at,
        "source": event.source,
        "attempt": event.attempt,
        "payload": payload_of(event),
    }


def encode_event(event: Event) -> bytes:
    """Serialize an event for the ledger topic."""
    return orjson.dumps(event_to_dict(event))


def decode_event(data: bytes | bytearray | memoryview | str | dict[str, Any] | None) -> Event:
    """Parse and check one ledger record; raise an :class:`EventError` subclass if it is bad.

    Six steps, each pure, in the order their errors are reported: read a JSON object, find its
    event type, bring its payload to the current version, gather the constructor's fields, check
    their types, build the event. The per-type facts the steps need come from :data:`_SCHEMAS`,
    derived once at import.
    """
    obj = _parse(data)
    schema = _schema_of(obj)
    payload = _current_payload(obj, schema)
    fields = _gather(obj, payload, schema)
    _check(fields, schema)
    return _build(fields, schema)


def _parse(data: bytes | bytearray | memoryview | str | dict[str, Any] | None) -> dict[str, Any]:
    """The record as a JSON object (a dict passes as it is: records already parsed by a reader)."""
    if data is None:
        raise MalformedEventError("empty record (tombstone) where an event was expected")
    if isinstance(data, dict):
        obj: Any = data
    else:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedEventError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEventError(f"an event is a JSON object, got {type(obj).__name__}")
    return obj


def _schema_of(obj: dict[str, Any]) -> _Schema:
    """What is known of the record's event type; refuses a missing or unknown ``type``."""
    type_name = obj.get("type")
    if not isinstance(type_name, str):
        raise MalformedEventError("missing or non-string 'type'")
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventTypeError(f"unknown event type {type_name!r}")
    return _SCHEMAS[cls]


def _current_payload(obj: dict[str, Any], schema: _Schema) -> dict[str, Any]:
    """The record's payload as the current version of its type has it (old versions upcast)."""
    name, known = schema.name, schema.cls.VERSION
    version = obj.get("v")
    if type(version) is not int:
        raise MalformedEventError(f"{name}: missing or non-integer 'v'")
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise MalformedEventError(f"{name}: missing or non-object 'payload'")
    if version > known or version < 1:
        raise UnsupportedVersionError(
            f"{name} v{version} is not readable by this code (knows up to v{known})"
        )
    while version < known:
        upcast = UPCASTERS.get((name, version))
        if upcast is None:
            raise UnsupportedVersionError(f"{name} v{version} has no upcaster")
        payload = upcast(payload)
        version += 1
    return payload


def _gather(obj: dict[str, Any], payload: dict[str, Any], schema: _Schema) -> dict[str, Any]:
    """The constructor's keyword arguments, unchecked: the envelope fields, then the payload's
    (which may name only the type's own fields, never an envelope field)."""
    fields: dict[str, Any] = {}
    for name in _ENVELOPE:
        if name == "attempt":
            fields[name] = obj.get(name, 0)
        elif name in obj:
            fields[name] = obj[name]
        else:
            raise MalformedEventError(f"{schema.name}: missing envelope field {name!r}")
    unknown = payload.keys() - schema.payload_fields
    if unknown:
        raise MalformedEventError(f"{schema.name}: unknown payload fields {sorted(unknown)}")
    fields.update(payload)
    return fields


def _check(fields: dict[str, Any], schema: _Schema) -> None:
    """Refuse a field of the wrong type, a missing required field, an empty id."""
    for name, check in schema.checks:
        if name in fields:
            if not check(fields[name]):
                raise MalformedEventError(
                    f"{schema.name}: field {name!r} has the wrong type ({type(fields[name]).__name__})"
                )
        elif name in schema.required:
            raise MalformedEventError(f"{schema.name}: missing field {name!r}")
    if not fields["job_id"] or not fields["event_id"]:
        raise MalformedEventError(f"{schema.name}: empty job_id or event_id")


def _build(fields: dict[str, Any], schema: _Schema) -> Event:
    """The event from checked fields; JSON arrays become the tuples the dataclass holds."""
    arrays = [name for name in schema.tuples if name in fields]
    if arrays:
        fields = {**fields, **{name: tuple(fields[name]) for name in arrays}}
    return schema.cls(**fields)


# --- what decoding knows of each event type, derived once from the annotations ---------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Schema:
    """One event type as the decoder sees it."""

    cls: type[Event]
    name: str
    """``cls.TYPE``, the record's ``type``."""
    checks: tuple[tuple[str, Callable[[Any], bool]], ...]
    """Every field (envelope and payload) with its type check, in the dataclass's field order
    (which is also the order errors are reported in)."""
    required: frozenset[str]
    """Fields without a default: a record must carry them."""
    payload_fields: frozenset[str]
    """The fields a payload may hold: all but the envelope's."""
    tuples: tuple[str, ...]
    """Fields typed ``tuple[...]``: JSON gives lists, the dataclass holds tuples."""

    @classmethod
    def of(cls, event_type: type[Event]) -> _Schema:
        hints = typing.get_type_hints(event_type)
        fields = dataclasses.fields(event_type)
        return cls(
            cls=event_type,
            name=event_type.TYPE,
            checks=tuple((f.name, _check_for(hints[f.name])) for f in fields),
            required=frozenset(
                f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
            payload_fields=frozenset(f.name for f in fields if f.name not in _ENVELOPE),
            tuples=tuple(f.name for f in fields if typing.get_origin(hints[f.name]) is tuple),
        )


def _check_for(tp: Any) -> Callable[[Any], bool]:
    """A predicate for "a JSON value that may go into a field annotated ``tp``"."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_check_for(a) for a in typing.get_args(tp)]
        return lambda v: any(p(v) for p in parts)
    if tp is type(None):
        return lambda v: v is None
    if tp is bool:
        return lambda v: type(v) is bool
    if tp is int:
        return lambda v: type(v) is int
    if tp is float:
        return lambda v: type(v) in (int, float)
    if tp is str:
        return lambda v: type(v) is str
    if origin is tuple:
        item_t, ellipsis = typing.get_args(tp)
        assert ellipsis is Ellipsis, f"only variable-length tuples are supported, not {tp!r}"
        ic = _check_for(item_t)
        # JSON has arrays, not tuples: a list passes here and becomes a tuple in _build
        return lambda v: isinstance(v, list | tuple) and all(ic(x) for x in v)
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        kc, vc = _check_for(key_t), _check_for(val_t)
        return lambda v: isinstance(v, dict) and all(kc(k) and vc(x) for k, x in v.items())
    raise TypeError(f"no checker for {tp!r}")  # a programming error in _events.py


_SCHEMAS: dict[type[Event], _Schema] = {cls: _Schema.of(cls) for cls in EVENT_TYPES.values()}
"""Every known event type's :class:`_Schema`, built once at import (event types are fixed then:
``EVENT_TYPES`` is a constant), so a decode only looks facts up. ``VERSION`` and
:data:`UPCASTERS` are read at each decode instead: a schema change (or a test) may set them."""


_TYPE_MARK = b'"type":"'


def may_be(raw: bytes | None, types: tuple[type[Event], ...]) -> bool:
    """Cheap pre-filter: False only when ``raw`` is surely none of ``types``.

    Every processor reads every ledger event but acts on a few types; the canonical encoding
    (``encode_event``, no spaces) names the type as ``"type":"X"``, so one substring test skips
    a full decode. Records not in that form answer True and get the full, strict decode.
    """
    if raw is None:
        return True
    at = raw.find(_TYPE_MARK)
    if at < 0:
        return True
    start = at + len(_TYPE_MARK)
    end = raw.find(b'"', start)
    name = raw[start:end]
    return any(name == t.TYPE.encode() for t in types)
