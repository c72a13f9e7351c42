"""Calling a service with `rest_tools.client.RestClient`, errors sorted into the two kinds callers treat differently.

`ServiceUnavailable`: no answer, a timeout, a 5xx or 429 — try again later, with backoff.
`ServiceRefused`: the service answered and said no (404, 409, ...) — act on it; `status` says which.
"""

from typing import Any

import requests
from rest_tools.client import RestClient


class RestError(Exception):
    """A call to a service did not do what was asked."""


class ServiceUnavailable(RestError):
    """The service could not be reached or could not answer now: try again later."""


class ServiceRefused(RestError):
    """The service answered with a client error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _refusal(exc: requests.exceptions.HTTPError, service: str) -> RestError:
    status = exc.response.status_code
    try:
        message = str(exc.response.json().get("error", exc.response.text))
    except ValueError:
        message = exc.response.text[:500]
    if status >= 500 or status == 429:
        return ServiceUnavailable(f"{service} answered {status}: {message}")
    return ServiceRefused(status, message)


async def call(
    client: RestClient, method: str, path: str, body: dict[str, Any] | None = None, *, service: str = "the service"
) -> Any:
    """`client.request(method, path, body)`, raising `ServiceUnavailable` or `ServiceRefused` instead of requests'."""
    try:
        return await client.request(method, path, body if body is not None else {})
    except requests.exceptions.HTTPError as exc:
        raise _refusal(exc, service) from None
    # RetryError: the connection pool gave up on answers of a retryable status (e.g. 503 while a database is down)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError) as exc:
        raise ServiceUnavailable(f"cannot reach {service} at {client.address}: {type(exc).__name__}") from None
