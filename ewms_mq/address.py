"""Broker addresses, as URLs and as EWMS's own clients write them.

EWMS's pilot and `oms-mqclient` pass `[SCHEME://][USER[:PASS]@]HOST[:PORT][/VHOST]` plus an
optional auth token that stands in for the password. Both forms end up here, so every
part of the system accepts exactly the same strings and masks them the same way in logs.
"""

import dataclasses
import urllib.parse

from .errors import InvalidAddress

DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671
HUMAN_PATTERN = "[amqp[s]://][USER[:PASS]@]HOST[:PORT][/VHOST]"


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """Everything needed to open an AMQP connection."""

    host: str
    port: int = DEFAULT_PORT
    vhost: str = "/"
    username: str = "guest"
    password: str = dataclasses.field(default="guest", repr=False)
    tls: bool = False

    def url(self) -> str:
        """The full `amqp://` URL, password included: never log this."""
        return self._format(urllib.parse.quote(self.password, safe=""))

    def masked(self) -> str:
        """The URL with the password replaced, safe for logs and error messages."""
        return self._format("***" if self.password else "")

    def _format(self, password: str) -> str:
        scheme = "amqps" if self.tls else "amqp"
        user = urllib.parse.quote(self.username, safe="")
        auth = f"{user}:{password}@" if password else f"{user}@"
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"{scheme}://{auth}{self.host}:{self.port}/{vhost}"


def parse_address(address: str, auth_token: str | None = None) -> BrokerAddress:
    """Parse an `amqp://` URL or an EWMS address; `auth_token` replaces the password.

    As in `oms-mqclient`, a token with no user name logs in with an empty user name
    (token-based auth plugins ignore it), and a user with no password is an error.
    """
    raw = address.strip()
    if not raw:
        raise InvalidAddress(f"empty broker address (format: {HUMAN_PATTERN})")
    parsed = urllib.parse.urlsplit(raw if "://" in raw else f"amqp://{raw}")
    if parsed.scheme not in ("amqp", "amqps"):
        raise InvalidAddress(f"unsupported scheme {parsed.scheme!r} in broker address (format: {HUMAN_PATTERN})")
    if not parsed.hostname:
        raise InvalidAddress(f"no host in broker address (format: {HUMAN_PATTERN})")
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidAddress(f"bad port in broker address: {exc}") from None
    tls = parsed.scheme == "amqps"
    username = urllib.parse.unquote(parsed.username) if parsed.username is not None else None
    password = urllib.parse.unquote(parsed.password) if parsed.password is not None else None
    if auth_token:
        password = auth_token
    if username and not password:
        raise InvalidAddress(f"user {username!r} given in broker address but no password or token")
    if username is None and not password:
        username, password = "guest", "guest"
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    return BrokerAddress(
        host=parsed.hostname,
        port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        vhost=urllib.parse.unquote(path) or "/",
        username=username or "",
        password=password or "",
        tls=tls,
    )
