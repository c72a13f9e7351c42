"""Memory and disk sizes as people write them ('512M', '2GiB', '1.5g') and as HTCondor and EWMS read them.

Powers of 1024 whatever the suffix spelling, as upstream EWMS and SkyDriver read `worker_memory`
and `scanner_server_memory`, so a size means the same bytes in every service.
"""

import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgtp])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
MAX_SIZE = 1024**5  # 1 PiB: the services' documents' maximum, and far inside what MongoDB stores (64-bit)


def parse_size(value: int | float | str) -> int:
    """Bytes from an integer or a string like '512M', '2GiB', '1.5g'; `ValueError` for anything else.

    A whole float (`1024.0`) counts as an integer, as JSON Schema's `integer` lets it through.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"not a whole number of bytes: {value!r}")
        return int(value)
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"not a size: {value!r} (e.g. 512M, 2GiB)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower() if unit else None])


def size_problem(value: int | float | str) -> str | None:
    """Why `value` is no size between 1 byte and `MAX_SIZE` (a string like '9999P' passes a schema's pattern),
    or None when it is one."""
    try:
        size = parse_size(value)
    except ValueError as exc:
        return str(exc)
    if not 1 <= size <= MAX_SIZE:
        return f"must be between 1 byte and 1P (got {size} bytes)"
    return None
