"""Broker addresses: URLs and the EWMS form must mean the same thing everywhere."""

import pytest

from ewms_mq import InvalidAddress, parse_address


@pytest.mark.parametrize(
    ("address", "token", "expected"),
    [
        ("amqp://u:p@h:1234/v", None, ("h", 1234, "v", "u", "p", False)),
        ("amqp://guest:guest@127.0.0.1:5672/", None, ("127.0.0.1", 5672, "/", "guest", "guest", False)),
        ("amqp://h/%2F", None, ("h", 5672, "/", "guest", "guest", False)),
        ("amqps://u:p@h", None, ("h", 5671, "/", "u", "p", True)),
        ("h", None, ("h", 5672, "/", "guest", "guest", False)),
        ("u:p@h:5679/vh", None, ("h", 5679, "vh", "u", "p", False)),
        ("u@h", "tok", ("h", 5672, "/", "u", "tok", False)),
        ("h:5672", "tok", ("h", 5672, "/", "", "tok", False)),
        ("u:old@h", "new", ("h", 5672, "/", "u", "new", False)),
        ("amqp://u:p%40ss@h", None, ("h", 5672, "/", "u", "p@ss", False)),
    ],
)
def test_parse(address: str, token: str | None, expected: tuple[object, ...]) -> None:
    a = parse_address(address, token)
    assert (a.host, a.port, a.vhost, a.username, a.password, a.tls) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "empty"),
        ("http://h", "unsupported scheme"),
        ("amqp://:5672", "no host"),
        ("h:notaport", "bad port"),
        ("user@h", "no password or token"),
    ],
)
def test_bad_addresses_name_the_problem(address: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=message):
        parse_address(address)


def test_masked_hides_password_and_token() -> None:
    a = parse_address("u:s3cret@h", "t0ken-xyz")
    assert "t0ken-xyz" not in a.masked() and "s3cret" not in a.masked()
    assert "t0ken-xyz" not in repr(a)
    assert a.masked() == "amqp://u:***@h:5672/%2F"
    assert "t0ken-xyz" in a.url()
