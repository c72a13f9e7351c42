"""Events: the JSON format, the detector geometry, the light model and the track simulator."""

from .geometry import Geometry, get_geometry, icecube_like
from .model import Event, EventFormatError, Truth, event_schema
from .simulate import TrackSpec, random_track, simulate_track

__all__ = [
    "Event",
    "EventFormatError",
    "Geometry",
    "TrackSpec",
    "Truth",
    "event_schema",
    "get_geometry",
    "icecube_like",
    "random_track",
    "simulate_track",
]
