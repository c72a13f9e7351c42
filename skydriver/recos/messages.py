"""The two messages of a distributed scan: a pixel task out, a pixel result back.

Both are small JSON objects, so each travels through the broker as one event. A task names the
event by `event_ref` (`Event.ref`: run, event and a digest of the document) rather than carrying
it: the event is shipped once per pilot, the tasks by the thousand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .base import RecoOption, RecoOutput


@dataclass(frozen=True)
class PixelTask:
    """Reconstruct `event_ref` with `reco_algo`, direction fixed at HEALPix (nside, pixel) in RING order, from `seed`.

    `reco_options` are the plugin's options (e.g. crash_dummy's failure_rate); empty for most scans.
    """

    event_ref: str
    reco_algo: str
    nside: int
    pixel: int
    seed: int
    reco_options: dict[str, RecoOption] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int]:
        """What identifies the work: a result with the same key answers this task."""
        return self.nside, self.pixel, self.seed

    def to_dict(self) -> dict[str, Any]:
        # the fields' own dict (every field is a scalar but the options): thousands of these per scan,
        # and `dataclasses.asdict` deep-copies field by field
        doc = dict(self.__dict__)
        if self.reco_options:
            doc["reco_options"] = dict(self.reco_options)
        else:
            del doc["reco_options"]
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PixelTask:
        return cls(
            event_ref=str(doc["event_ref"]),
            reco_algo=str(doc["reco_algo"]),
            nside=int(doc["nside"]),
            pixel=int(doc["pixel"]),
            seed=int(doc["seed"]),
            reco_options=dict(doc.get("reco_options", {})),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PixelTask:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class PixelResult:
    """The fit of one task: its key, the reconstruction's output and how long it took."""

    event_ref: str
    nside: int
    pixel: int
    seed: int
    llh: float
    E_in: float
    E_tot: float
    X: float
    Y: float
    Z: float
    T: float
    reco_seconds: float

    @property
    def key(self) -> tuple[int, int, int]:
        return self.nside, self.pixel, self.seed

    @classmethod
    def of(cls, task: PixelTask, output: RecoOutput, reco_seconds: float) -> PixelResult:
        return cls(task.event_ref, task.nside, task.pixel, task.seed, **vars(output), reco_seconds=reco_seconds)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)  # every field is a scalar: no need for `dataclasses.asdict`'s deep copy

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PixelResult:
        return cls(
            event_ref=str(doc["event_ref"]),
            nside=int(doc["nside"]),
            pixel=int(doc["pixel"]),
            seed=int(doc["seed"]),
            llh=float(doc["llh"]),
            E_in=float(doc["E_in"]),
            E_tot=float(doc["E_tot"]),
            X=float(doc["X"]),
            Y=float(doc["Y"]),
            Z=float(doc["Z"]),
            T=float(doc["T"]),
            reco_seconds=float(doc["reco_seconds"]),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PixelResult:
        return cls.from_dict(json.loads(text))
