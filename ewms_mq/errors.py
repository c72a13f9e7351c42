"""Exceptions a caller of `ewms_mq` can tell apart.

Every message names the broker by its masked address, so an error can go to a log
without leaking a password or token.
"""


class MQError(Exception):
    """Base of every error raised by `ewms_mq`."""


class InvalidAddress(MQError, ValueError):
    """The broker address cannot be parsed."""


class BrokerUnreachable(MQError):
    """No connection to the broker could be opened (or re-opened in time)."""


class BrokerAuthError(MQError):
    """The broker refused the credentials."""


class QueueNotFound(MQError):
    """The queue does not exist on the broker."""


class PublishFailed(MQError):
    """The broker did not take a message (negative confirm)."""


class DecodeError(MQError, ValueError):
    """A body cannot be encoded or decoded in the requested wire format."""


class ManagementError(MQError):
    """The management HTTP API refused a call (`status` is its HTTP status) or is unreachable (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
