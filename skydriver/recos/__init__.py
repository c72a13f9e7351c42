"""Reconstructions run by pilots, one pixel task at a time.

The registry maps a scan request's `reco_algo` to its plugin class. `run_pixel_task` is the
whole contract a pilot needs (see docs/science.md):

    result = run_pixel_task(task, event)     # task: PixelTask dict, event: event document (dict)

It returns a `PixelResult` dict. The reconstruction built for an event is cached by the task's
`event_ref`, so a pilot that runs thousands of tasks of one event prepares it once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..event.model import Event
from .base import Reco, RecoOption, RecoOutput
from .dummy import CrashDummy, Dummy, RecoCrash
from .messages import PixelResult, PixelTask
from .pandel_track import PandelTrack
from .pixel import ring_pixel_angles

RECOS: dict[str, type[Reco]] = {cls.name: cls for cls in (Dummy, CrashDummy, PandelTrack)}
CACHED_RECOS = 8

__all__ = [
    "RECOS",
    "EventMismatch",
    "PixelResult",
    "PixelTask",
    "Reco",
    "RecoCrash",
    "RecoOutput",
    "get_reco_class",
    "pixel_direction",
    "run_pixel_task",
]


class EventMismatch(ValueError):
    """The event handed in is not the one the task names."""


def get_reco_class(name: str) -> type[Reco]:
    """The plugin registered under `name` (a scan request's `reco_algo`)."""
    try:
        return RECOS[name]
    except KeyError:
        raise ValueError(f"unknown reco_algo {name!r}; known: {sorted(RECOS)}") from None


def pixel_direction(nside: int, pixel: int) -> tuple[float, float]:
    """(ra, dec) in radians of a HEALPix pixel centre, RING ordering (icecube-skyreader's convention)."""
    theta, phi = ring_pixel_angles(nside, pixel)
    return phi, float(np.pi / 2 - theta)


def run_pixel_task(task: Mapping[str, Any], event: Mapping[str, Any] | Event) -> dict[str, Any]:
    """Run one pixel task on `event`; returns the `PixelResult` as a dict.

    `event` is only read when the task's event is not cached yet; it must then be the event the task
    names (`EventMismatch` otherwise). Exceptions of the reconstruction (e.g. `RecoCrash`) propagate:
    the pilot turns them into a failed, retried event.
    """
    pixel_task = PixelTask.from_dict(dict(task))
    reco = _cached_reco(pixel_task.reco_algo, _options_key(pixel_task.reco_options), pixel_task.event_ref, event)
    ra, dec = pixel_direction(pixel_task.nside, pixel_task.pixel)
    started = time.perf_counter()
    output = reco.fit(ra, dec, pixel_task.seed)
    return PixelResult.of(pixel_task, output, time.perf_counter() - started).to_dict()


def _options_key(options: Mapping[str, RecoOption]) -> str:
    return json.dumps(dict(options), sort_keys=True)


_reco_cache: dict[tuple[str, str, str], Reco] = {}
_reco_cache_lock = threading.Lock()  # a pilot may run several tasks at once, each in a worker thread


def _cached_reco(algo: str, options_key: str, event_ref: str, event: Mapping[str, Any] | Event) -> Reco:
    key = (algo, options_key, event_ref)
    with _reco_cache_lock:
        if key in _reco_cache:
            return _reco_cache[key]
        loaded = event if isinstance(event, Event) else Event.from_dict(dict(event))
        if loaded.ref != event_ref:
            raise EventMismatch(f"task is for event {event_ref}, but the event given is {loaded.ref}")
        if len(_reco_cache) >= CACHED_RECOS:
            del _reco_cache[next(iter(_reco_cache))]  # the oldest: a pilot works on one event at a time
        _reco_cache[key] = reco = get_reco_class(algo)(loaded, json.loads(options_key))
        return reco
