"""Memory and disk sizes as people write them ('512M', '2GiB', '1.5g') and as HTCondor and EWMS read them.

Powers of 1024 whatever the suffix spelling, as upstream EWMS and SkyDriver read `worker_memory`
and `scanner_server_memory`, so a size means the same bytes in every service.
"""

import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string like '512M', '2GiB', '1.5g'; `ValueError` for anything else."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"not a size: {value!r} (e.g. 512M, 2GiB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower() if unit else None])
