"""Events shipped with the package, so a fresh install can scan something before it has data of its own.

`simulated_track.json` is the track `skymap-scan --simulate 42` draws (RA 285.7°, dec -30.5°, 2.5 TeV;
the truth is inside the document), in the event format of docs/science.md. Its `pandel_track` skymap
(nsides 8:0,64:12,512:24) has the truth inside the 90% contour, 0.2° from the best fit.
"""

from importlib import resources
from pathlib import Path

EXAMPLE_EVENT = "simulated_track.json"


def example_event_path() -> Path:
    """The bundled example event's file (package data, so it exists wherever the package is installed)."""
    return Path(str(resources.files(__package__).joinpath(EXAMPLE_EVENT)))
