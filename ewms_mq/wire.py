"""Message bodies on the wire.

`oms-mqclient`, EWMS's own client library, sends every message as a zstd frame of UTF-8
JSON `{"headers": {...}, "data": <any JSON value>}`. We write that envelope by default so
its consumers read our messages, and read it, plain JSON and raw bytes so we read theirs
and anything else: the zstd magic number tells an envelope from the rest.
"""

import enum
import json
from typing import Any

import zstandard

from .errors import DecodeError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_BYTES = "application/octet-stream"
CONTENT_ENCODING_ZSTD = "zstd"

_compressor = zstandard.ZstdCompressor(level=3)
_decompressor = zstandard.ZstdDecompressor()


class WireFormat(enum.Enum):
    """How `publish` encodes a body."""

    ENVELOPE = "envelope"  # oms-mqclient's zstd-compressed {"headers", "data"} JSON
    JSON = "json"  # plain UTF-8 JSON of the data
    BYTES = "bytes"  # the caller's bytes, untouched


def encode(data: Any, headers: dict[str, Any] | None, wire_format: WireFormat) -> tuple[bytes, str, str | None]:
    """Return (body, content_type, content_encoding) for `data`."""
    if wire_format is WireFormat.BYTES:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"WireFormat.BYTES needs bytes, got {type(data).__name__}")
        return bytes(data), CONTENT_TYPE_BYTES, None
    if isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{wire_format} needs a JSON value, got bytes; use WireFormat.BYTES")
    try:
        if wire_format is WireFormat.JSON:
            return json.dumps(data).encode(), CONTENT_TYPE_JSON, None
        envelope = json.dumps({"headers": headers or {}, "data": data}).encode()
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"data is not JSON-serialisable: {exc}") from None
    return _compressor.compress(envelope), CONTENT_TYPE_JSON, CONTENT_ENCODING_ZSTD


def decode(body: bytes, content_type: str | None) -> tuple[Any, dict[str, Any] | None]:
    """Return (data, envelope headers or None) for a received body.

    A zstd frame must hold the envelope; a body marked as bytes stays bytes; anything else
    is tried as JSON and kept as bytes when it is not.
    """
    if body[:4] == ZSTD_MAGIC:
        return _decode_envelope(body)
    if content_type == CONTENT_TYPE_BYTES:
        return body, None
    try:
        return json.loads(body), None
    except (UnicodeDecodeError, ValueError):
        return body, None


def _decode_envelope(body: bytes) -> tuple[Any, dict[str, Any]]:
    try:
        # frames written by streaming compressors carry no content size: decompressobj copes
        raw = _decompressor.decompressobj().decompress(body)
        envelope = json.loads(raw)
    except (zstandard.ZstdError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"zstd body is not an oms-mqclient envelope: {exc}") from None
    if not isinstance(envelope, dict) or "data" not in envelope or "headers" not in envelope:
        raise DecodeError("zstd body is not an oms-mqclient envelope: keys 'headers' and 'data' missing")
    headers = envelope["headers"] if isinstance(envelope["headers"], dict) else {}
    return envelope["data"], headers
