"""The event, carried to pilots in their task's environment.

A pixel task names its event by `event_ref`; the event itself travels once per workflow, in the
task's `environment`, so every pilot (a host command, a container, an in-process callable) has it
without a data hub or a shared file system. The WMS caps each value at 16,384 characters and a
workflow at 256 variables, so the canonical JSON is zstd-compressed, base64-encoded and cut into
chunks of at most 12,000 characters: `SKYDRIVER_EVENT_0`, `SKYDRIVER_EVENT_1`, ... A typical event
(a few thousand pulses) fits in one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import zstandard

from ..event.model import Event

VARIABLE_PREFIX = "SKYDRIVER_EVENT_"
CHUNK_CHARS = 12_000
MAX_CHUNKS = 200  # leaves room under the WMS's 256 variables for the task's other settings
ZSTD_LEVEL = 19  # compressed once per scan, decompressed once per pilot: spend the time on size


class EventTransportError(ValueError):
    """The event cannot be put into, or read from, the environment."""


def event_env(event: Event) -> dict[str, str]:
    """`{"SKYDRIVER_EVENT_0": ..., ...}`: the event as environment variables for the workflow's task."""
    compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(event.to_json().encode())
    blob = base64.b64encode(compressed).decode("ascii")
    chunks = [blob[start : start + CHUNK_CHARS] for start in range(0, len(blob), CHUNK_CHARS)]
    if len(chunks) > MAX_CHUNKS:
        raise EventTransportError(
            f"event {event.ref} needs {len(chunks)} variables of {CHUNK_CHARS} characters; at most {MAX_CHUNKS} fit"
        )
    return {f"{VARIABLE_PREFIX}{index}": chunk for index, chunk in enumerate(chunks)}


def event_from_env(environ: Mapping[str, str]) -> Event:
    """The event `event_env` wrote, read back from `environ` (chunks in order, up to the first gap)."""
    chunks: list[str] = []
    while (chunk := environ.get(f"{VARIABLE_PREFIX}{len(chunks)}")) is not None:
        chunks.append(chunk)
    if not chunks:
        raise EventTransportError(f"no event in the environment: {VARIABLE_PREFIX}0 is not set")
    try:
        text = zstandard.ZstdDecompressor().decompress(base64.b64decode("".join(chunks), validate=True))
    except (binascii.Error, zstandard.ZstdError) as exc:
        raise EventTransportError(f"{VARIABLE_PREFIX}0..{len(chunks) - 1} do not hold an event: {exc}") from None
    return Event.from_json(text.decode())
