"""The one error type REST handlers raise: an HTTP status with a message meant for the caller."""

import tornado.web

from .validation import FieldError


class ApiError(tornado.web.HTTPError):
    """Answered as `{"code": status, "error": message, "errors": [{field, reason}, ...]}`.

    The message goes in the JSON body, never in the HTTP status line (tornado replaces
    reason phrases it dislikes), so it can say exactly what is wrong.
    """

    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(status)
        self.message = message
        self.errors = errors or []

    @classmethod
    def bad_request(cls, errors: list[FieldError]) -> "ApiError":
        return cls(400, "; ".join(str(e) for e in errors), errors)
