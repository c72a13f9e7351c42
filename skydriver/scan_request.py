"""`POST /scan` bodies made into one stored form, whichever of upstream SkyDriver's spellings a client used.

The OpenAPI document has already checked each field's shape; this module does what a schema
cannot: it parses the event (an object or a JSON string) and checks it with `Event.from_dict`,
folds the deprecated aliases (`cluster`, `scanner_server_memory`, `worker_memory`, `worker_disk`)
into their fields, turns sizes like "1G" into bytes and `[[location, n], ...]` into a mapping,
checks that nsides are a valid refinement ladder and that the reconstruction accepts its options,
and fills in the defaults. Every problem is a `FieldError` naming the field, so the client gets a
400 it can act on. The stored form is also what `GET /scan-request/{id}` answers, and posting that
answer back gives the same request.
"""

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ewms_config import parse_size, size_problem
from ewms_rest.validation import FieldError, InvalidRequest

from .event import Event, EventFormatError
from .recos import get_reco_class
from .scanner.pixels import parse_nsides

GiB = 1024**3
DEFAULTS: dict[str, Any] = {
    "docker_tag": "latest",
    "predictive_scanning_threshold": 1.0,
    "classifiers": {},
    "worker_memory_bytes": 8 * GiB,
    "worker_disk_bytes": GiB,
    "max_pixel_reco_time": 1800,
    "max_worker_runtime": 4 * 3600,
    "priority": 0,
    "scanner_server_memory_bytes": GiB,
    "scanner_server_env": {},
    "reco_options": {},
}
# field -> its deprecated alias (upstream SkyDriver's spelling)
ALIASES = {
    "request_clusters": "cluster",
    "scanner_server_memory_bytes": "scanner_server_memory",
    "worker_memory_bytes": "worker_memory",
    "worker_disk_bytes": "worker_disk",
}
NOT_REQUEST_FIELDS = ("scan_id", "i3_event_id", "rescan_ids")  # stored beside the request's own fields
SIZES = ("worker_memory_bytes", "worker_disk_bytes", "scanner_server_memory_bytes")
REAL = frozenset({"real", "rl", "real_event"})


@dataclasses.dataclass(frozen=True)
class ScanRequest:
    """A normalised request: the stored fields (without the event) and the event, parsed."""

    fields: dict[str, Any]
    event: Event

    @property
    def i3_event_id(self) -> str:
        """The event's id in `Events`: a digest of its canonical JSON, so one event is stored once."""
        return hashlib.sha256(self.event.to_json().encode()).hexdigest()[:32]


def normalise(body: Mapping[str, Any], default_clusters: Mapping[str, int]) -> ScanRequest:
    """The stored form of a schema-valid `POST /scan` body; `InvalidRequest` naming each field at fault."""
    errors: list[FieldError] = []
    fields = _unaliased(body, errors)
    event = _event(body["event_i3live_json"], errors)
    fields["reco_algo"] = body["reco_algo"]
    fields["nsides"] = _nsides(body["nsides"], errors)
    fields["real_or_simulated_event"] = "real" if body["real_or_simulated_event"] in REAL else "simulated"
    fields["request_clusters"] = _clusters(fields.get("request_clusters") or default_clusters)
    for name in SIZES:
        if name in fields:
            if problem := size_problem(fields[name]):
                errors.append(FieldError(name if name in body else ALIASES[name], problem))
            else:
                fields[name] = parse_size(fields[name])
    for name, default in DEFAULTS.items():
        if fields.get(name) is None:
            fields[name] = default
    if event is not None and not errors:
        _check_reco_options(fields["reco_algo"], event, fields["reco_options"], errors)
    if errors:
        raise InvalidRequest(errors)
    assert event is not None
    return ScanRequest(fields, event)


def _unaliased(body: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """The optional fields under their own names; an alias given together with its field is an error."""
    fields = {k: body[k] for k in (*DEFAULTS, *ALIASES) if k in body}
    for name, alias in ALIASES.items():
        if alias in body and name in body:
            errors.append(FieldError(alias, f"is an alias of {name}; give only one of them"))
        elif alias in body:
            fields[name] = body[alias]
    return fields


def _event(value: dict[str, Any] | str, errors: list[FieldError]) -> Event | None:
    """The event from an object or upstream's JSON string; checked the way every pilot will read it."""
    field = "event_i3live_json"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            errors.append(FieldError(field, f"is a string but not valid JSON ({exc})"))
            return None
        if not isinstance(value, dict):
            errors.append(FieldError(field, "is a JSON string that does not hold an object"))
            return None
    try:
        return Event.from_dict(value)
    except (EventFormatError, ValueError, KeyError, TypeError) as exc:
        errors.append(FieldError(field, str(exc)))
        return None


def _nsides(value: Mapping[str, int], errors: list[FieldError]) -> dict[str, int]:
    """The refinement ladder with canonical string keys (MongoDB keys must be strings)."""
    try:
        pairs = parse_nsides(value.items())
    except ValueError as exc:
        errors.append(FieldError("nsides", str(exc).removeprefix("nsides: ")))
        return {}
    return {str(nside): count for nside, count in pairs}


def _clusters(value: Mapping[str, int] | list[list[Any]]) -> dict[str, int]:
    """`{location: n_workers}`; upstream's list of pairs may name a location twice: the workers add up."""
    pairs = value.items() if isinstance(value, Mapping) else [(str(p[0]), p[1]) for p in value]
    clusters: dict[str, int] = {}
    for location, n_workers in pairs:  # int(): JSON Schema's integer lets 3.0 through
        clusters[location] = clusters.get(location, 0) + int(n_workers)
    return clusters


def _check_reco_options(algo: str, event: Event, options: dict[str, Any], errors: list[FieldError]) -> None:
    """Build the reconstruction once: options it refuses here would fail in every pilot instead."""
    try:
        get_reco_class(algo)(event, options)
    except (ValueError, TypeError) as exc:
        errors.append(FieldError("reco_options", str(exc)))


def request_answer(stored: Mapping[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """`GET /scan-request/{id}`: the stored request with its event, postable to `POST /scan` again."""
    answer = {k: v for k, v in stored.items() if k != "i3_event_id"}
    answer["event_i3live_json"] = event
    return answer


def from_stored(stored: Mapping[str, Any], event: Event) -> ScanRequest:
    """The request a scan was made from, to make another (a rescan): stored fields are normalised already."""
    return ScanRequest({k: v for k, v in stored.items() if k not in NOT_REQUEST_FIELDS}, event)
