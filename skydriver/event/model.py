"""The event: a JSON document (schema `event.schema.json`) and its typed, numpy-backed form.

JSON is what travels (in a scan request, to pilots, into MongoDB); `Event` is what the code
works with. `Event.from_dict` validates against the schema and checks what a schema cannot
(equal column lengths, module numbers inside the named geometry), so a bad event is refused at
the door rather than failing in a thousand pilots.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

import jsonschema  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from .geometry import Geometry, get_geometry

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

FORMAT_VERSION = 1
SCHEMA_FILE = "event.schema.json"
Topology = Literal["through-going", "starting"]


class EventFormatError(ValueError):
    """The document is not a valid event; the message says where."""


@functools.cache
def event_schema() -> dict[str, Any]:
    """The JSON Schema of the event format, shipped inside the package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return _make_validator(event_schema())


def _make_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return cast(jsonschema.protocols.Validator, validator_class(schema))


# what a pulse column's item schema may say for `_plain_column` to check it at array speed
_ARRAY_CHECKED = {"type", "minimum", "exclusiveMinimum", "description"}


@functools.cache
def _shallow_validation() -> tuple[jsonschema.protocols.Validator, dict[str, dict[str, Any]]]:
    """A validator for everything but the pulse columns' items, and those items' schemas.

    Validating an alert's thousands of pulses number by number took jsonschema about 0.1 s per
    event, paid when skydriver takes the scan, when its scanner starts and in every pilot's first
    task; `_plain_column` checks the same rules on whole columns. A rule it does not know keeps
    the column on jsonschema's path.
    """
    schema = json.loads(json.dumps(event_schema()))  # a deep copy
    columns: dict[str, dict[str, Any]] = {}
    for name, column in schema["properties"]["pulses"]["properties"].items():
        if set(column["items"]) <= _ARRAY_CHECKED:
            columns[name] = column.pop("items")
    return _make_validator(schema), columns


def _plain_column(values: Any, item: dict[str, Any]) -> bool:
    """Whether every value of a pulse column meets its item schema (else jsonschema says which fails)."""
    kinds: tuple[type, ...] = (int,) if item["type"] == "integer" else (int, float)
    if not all(type(v) in kinds for v in values):  # exact types: a bool is no number to jsonschema either
        return False
    array = np.asarray(values, dtype=np.float64)
    if "minimum" in item and not (array >= item["minimum"]).all():
        return False
    return not ("exclusiveMinimum" in item and not (array > item["exclusiveMinimum"]).all())


def _schema_error(doc: dict[str, Any]) -> jsonschema.ValidationError | None:
    """The event's first schema violation, or None; valid pulse columns cost an array check each."""
    validator, columns = _shallow_validation()
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is None and not all(_plain_column(doc["pulses"][name], item) for name, item in columns.items()):
        error = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    return cast("jsonschema.ValidationError | None", error)


@dataclass(frozen=True)
class Truth:
    """What the simulator drew: the source direction and the muon."""

    ra: float
    dec: float
    vertex_m: tuple[float, float, float]
    time_ns: float
    energy_gev: float
    topology: Topology
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ra": self.ra,
            "dec": self.dec,
            "vertex_m": list(self.vertex_m),
            "time_ns": self.time_ns,
            "energy_gev": self.energy_gev,
            "topology": self.topology,
        }
        if self.seed is not None:
            result["seed"] = self.seed
        return result

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Truth:
        x, y, z = (float(v) for v in doc["vertex_m"])
        return cls(
            ra=float(doc["ra"]),
            dec=float(doc["dec"]),
            vertex_m=(x, y, z),
            time_ns=float(doc["time_ns"]),
            energy_gev=float(doc["energy_gev"]),
            topology=doc["topology"],
            seed=doc.get("seed"),
        )


@dataclass(frozen=True, eq=False)
class Event:
    """One event. Pulses are column arrays sorted by time; `om_index` addresses `geometry.positions`."""

    run_id: int
    event_id: int
    mjd: float
    event_type: str
    is_real_event: bool
    geometry_name: str
    readout_window_ns: tuple[float, float]
    om_index: IntArray
    time_ns: FloatArray
    charge_pe: FloatArray
    truth: Truth | None = None

    @property
    def geometry(self) -> Geometry:
        return get_geometry(self.geometry_name)

    @property
    def n_pulses(self) -> int:
        return int(self.time_ns.size)

    @functools.cached_property
    def ref(self) -> str:
        """A short name that identifies this exact event: run, event and a digest of the whole document.

        Pixel tasks carry it, so a pilot can check it holds the event a task is about.
        """
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return f"run{self.run_id}.evt{self.event_id}.{digest}"

    def to_dict(self) -> dict[str, Any]:
        strings, oms = self.geometry.string_and_om(self.om_index)
        doc: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "run_id": self.run_id,
            "event_id": self.event_id,
            "mjd": self.mjd,
            "event_type": self.event_type,
            "is_real_event": self.is_real_event,
            "geometry": self.geometry_name,
            "readout_window_ns": list(self.readout_window_ns),
            "pulses": {
                "string": strings.tolist(),
                "om": oms.tolist(),
                "time_ns": self.time_ns.tolist(),
                "charge_pe": self.charge_pe.tolist(),
            },
        }
        if self.truth is not None:
            doc["truth"] = self.truth.to_dict()
        return doc

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal events give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Event:
        """Validate and load; raises `EventFormatError` naming the first problem."""
        error = _schema_error(doc)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise EventFormatError(f"event invalid at {where}: {error.message}")
        pulses = doc["pulses"]
        lengths = {name: len(column) for name, column in pulses.items()}
        if len(set(lengths.values())) != 1:
            raise EventFormatError(f"event pulses: columns differ in length: {lengths}")
        start, end = (float(v) for v in doc["readout_window_ns"])
        if not end > start:
            raise EventFormatError(f"event readout_window_ns: end {end} is not after start {start}")
        geometry = get_geometry(doc["geometry"])
        try:
            om_index = geometry.om_index(pulses["string"], pulses["om"])
        except ValueError as exc:
            raise EventFormatError(f"event pulses: {exc}") from None
        times = np.asarray(pulses["time_ns"], dtype=np.float64)
        order = np.argsort(times, kind="stable")
        return cls(
            run_id=doc["run_id"],
            event_id=doc["event_id"],
            mjd=float(doc["mjd"]),
            event_type=doc["event_type"],
            is_real_event=doc["is_real_event"],
            geometry_name=doc["geometry"],
            readout_window_ns=(start, end),
            om_index=om_index[order],
            time_ns=times[order],
            charge_pe=np.asarray(pulses["charge_pe"], dtype=np.float64)[order],
            truth=Truth.from_dict(doc["truth"]) if "truth" in doc else None,
        )

    @classmethod
    def from_json(cls, text: str) -> Event:
        return cls.from_dict(json.loads(text))
