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
    """Parse and check one ledger record; raise an :class:`EventError` subclass if it is bad."""
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
    type_name = obj.get("type")
    if not isinstance(type_name, str):
        raise MalformedEventError("missing or non-string 'type'")
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventTypeError(f"unknown event type {type_name!r}")
    version = obj.get("v")
    if type(version) is not int:
        raise MalformedEventError(f"{type_name}: missing or non-integer 'v'")
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise MalformedEventError(f"{type_name}: missing or non-object 'payload'")
    if version > cls.VERSION or version < 1:
        raise UnsupportedVersionError(
            f"{type_name} v{version} is not readable by this code (knows up to v{cls.VERSION})"
        )
    while version < cls.VERSION:
        upcast = UPCASTERS.get((type_name, version))
        if upcast is None:
            raise UnsupportedVersionError(f"{type_name} v{version} has no upcaster")
        payload = upcast(payload)
        version += 1
    kwargs: dict[str, Any] = {}
    for name in _ENVELOPE:
        if name == "attempt":
            kwargs[name] = obj.get(name, 0)
        elif name in obj:
            kwargs[name] = obj[name]
        else:
            raise MalformedEventError(f"{type_name}: missing envelope field {name!r}")
    unknown = set(payload) - set(_payload_checkers(cls))
    if unknown:
        raise MalformedEventError(f"{type_name}: unknown payload fields {sorted(unknown)}")
    kwargs.update(payload)
    for name, check in _checkers(cls).items():
        if name in kwargs:
            if not check(kwargs[name]):
                raise MalformedEventError(
                    f"{type_name}: field {name!r} has the wrong type ({type(kwargs[name]).__name__})"
                )
        elif name in _required(cls):
            raise MalformedEventError(f"{type_name}: missing field {name!r}")
    if not kwargs["job_id"] or not kwargs["event_id"]:
        raise MalformedEventError(f"{type_name}: empty job_id or event_id")
    for name in _tuples(cls):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


# --- field type checks, derived once per class from the annotations -------------------------

_CHECKER_CACHE: dict[type[Event], dict[str, Callable[[Any], bool]]] = {}
_REQUIRED_CACHE: dict[type[Event], frozenset[str]] = {}
_TUPLE_CACHE: dict[type[Event], frozenset[str]] = {}


def _check_for(tp: Any) -> Callable[[Any], bool]:
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
        # JSON has arrays, not tuples: a list passes here and becomes a tuple in decode_event
        return lambda v: isinstance(v, list | tuple) and all(ic(x) for x in v)
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        kc, vc = _check_for(key_t), _check_for(val_t)
        return lambda v: isinstance(v, dict) and all(kc(k) and vc(x) for k, x in v.items())
    raise TypeError(f"no checker for {tp!r}")  # a programming error in _events.py


def _checkers(cls: type[Event]) -> dict[str, Callable[[Any], bool]]:
    found = _CHECKER_CACHE.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = {
            f.name: _check_for(hints[f.name]) for f in dataclasses.fields(cls)
        }
        _CHECKER_CACHE[cls] = found
        _REQUIRED_CACHE[cls] = frozenset(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        _TUPLE_CACHE[cls] = frozenset(
            f.name for f in dataclasses.fields(cls) if typing.get_origin(hints[f.name]) is tuple
        )
    return found


def _payload_checkers(cls: type[Event]) -> dict[str, Callable[[Any], bool]]:
    return {k: v for k, v in _checkers(cls).items() if k not in _ENVELOPE}


def _required(cls: type[Event]) -> frozenset[str]:
    _checkers(cls)
    return _REQUIRED_CACHE[cls]


def _tuples(cls: type[Event]) -> frozenset[str]:
    _checkers(cls)
    return _TUPLE_CACHE[cls]


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
