"""Wire format: oms-mqclient's zstd envelope, plain JSON and bytes, both directions."""

import pytest
import zstandard
from mqclient.broker_client_interface import Message as UpstreamMessage

from ewms_mq import DecodeError, WireFormat
from ewms_mq.wire import ZSTD_MAGIC, decode, encode

VALUES = [{"a": [1, 2.5, None]}, "a string", 17, [], None, {"nested": {"ü": "ñ"}}]


@pytest.mark.parametrize("value", VALUES)
def test_envelope_round_trip_and_upstream_reads_ours(value: object) -> None:
    body, content_type, encoding = encode(value, {"k": "v"}, WireFormat.ENVELOPE)
    assert body[:4] == ZSTD_MAGIC and encoding == "zstd"
    assert decode(body, content_type) == (value, {"k": "v"})
    upstream = UpstreamMessage(b"id", body)
    assert upstream.data == value and upstream.headers == {"k": "v"}


@pytest.mark.parametrize("value", VALUES)
def test_we_read_upstream_envelopes(value: object) -> None:
    body = UpstreamMessage.serialize(value, headers={"h": 1})
    assert decode(body, None) == (value, {"h": 1})


def test_plain_json_and_bytes() -> None:
    body, content_type, _ = encode({"x": 1}, None, WireFormat.JSON)
    assert body == b'{"x": 1}' and decode(body, content_type) == ({"x": 1}, None)
    raw = b"\x00\x01 not json"
    body, content_type, _ = encode(raw, None, WireFormat.BYTES)
    assert decode(body, content_type) == (raw, None)
    assert decode(b"not json at all", None) == (b"not json at all", None)
    assert decode(b"[1,2]", "application/octet-stream") == (b"[1,2]", None)


def test_encode_errors_are_clear() -> None:
    with pytest.raises(DecodeError, match="needs bytes"):
        encode({"x": 1}, None, WireFormat.BYTES)
    with pytest.raises(DecodeError, match=r"use WireFormat\.BYTES"):
        encode(b"x", None, WireFormat.ENVELOPE)
    with pytest.raises(DecodeError, match="not JSON-serialisable"):
        encode({"x": object()}, None, WireFormat.JSON)


def test_corrupt_envelope_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not an oms-mqclient envelope"):
        decode(ZSTD_MAGIC + b"garbage", None)
    with pytest.raises(DecodeError, match="keys 'headers' and 'data' missing"):
        decode(zstandard.ZstdCompressor().compress(b'{"x": 1}'), None)
