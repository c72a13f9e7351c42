"""What every REST handler shares: validated JSON in, JSON out, errors a caller can act on.

Handlers extend `rest_tools.server.RestHandler` (token validation, request logging). Each names
its OpenAPI path template in `ROUTE`; `body()`, `query()` and `check_path()` validate against that
operation in the service's document, so the document and the code cannot drift apart without a
400 or a test saying so. Errors are `{"code", "error", "errors": [{field, reason}]}`; a backend
that does not answer (the exceptions in `UNAVAILABLE`) is a 503, never a 500.
"""

import http
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import tornado.web
from rest_tools.server import RestHandler

from .errors import ApiError
from .validation import FieldError, InvalidRequest, RequestValidator

T = TypeVar("T")
METHODS = ("get", "post", "put", "patch", "delete")


class HandlerContext(Protocol):
    """What a service hands every handler: at least its validator and where tokens carry roles."""

    @property
    def validator(self) -> RequestValidator: ...

    @property
    def role_claim(self) -> str: ...


class BaseHandler(RestHandler):
    """JSON in, JSON out, errors as `{"code", "error", "errors"}`."""

    ROUTE: ClassVar[str] = ""
    REALM: ClassVar[str] = "api"  # named in WWW-Authenticate
    UNAVAILABLE: ClassVar[tuple[type[BaseException], ...]] = ()  # backend down: 503, the caller may retry
    UNAVAILABLE_MESSAGE: ClassVar[str] = "a backend does not answer; try again later"

    def initialize(self, ctx: HandlerContext, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.ctx = ctx
        self.role_claim = ctx.role_claim
        self.roles: set[str] = set()
        self.subject = ""

    # -- input -----------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        """The request's JSON body, validated against this operation's schema."""
        method = self.request.method or ""
        return self._validated(lambda: self.ctx.validator.body(self.ROUTE, method, self.request.body))

    def query(self) -> dict[str, Any]:
        """The declared query arguments, validated."""
        method = self.request.method or ""
        return self._validated(lambda: self.ctx.validator.query(self.ROUTE, method, self.request.query_arguments))

    def check_path(self, **arguments: str) -> None:
        """Ids in the path have their documented form (else 400)."""
        self._validated(lambda: self.ctx.validator.path(self.ROUTE, self.request.method or "", arguments))

    @staticmethod
    def _validated(check: Callable[[], T]) -> T:
        try:
            return check()
        except InvalidRequest as exc:
            raise ApiError.bad_request(exc.errors) from None

    @staticmethod
    def bad_field(field: str, reason: str) -> ApiError:
        return ApiError.bad_request([FieldError(field, reason)])

    # -- output ----------------------------------------------------------------------------------

    def send(self, obj: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.write(obj)

    def write_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Every error as JSON: a message a person can act on, and the fields at fault for bad input."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, self.UNAVAILABLE):
            status_code = 503
            self.set_status(status_code)
        body: dict[str, Any] = {"code": status_code, "error": http.HTTPStatus(status_code).phrase}
        if isinstance(exc, ApiError):
            body["error"] = exc.message
            if exc.errors:
                body["errors"] = [{"field": e.field, "reason": e.reason} for e in exc.errors]
        elif status_code == 503:
            body["error"] = self.UNAVAILABLE_MESSAGE
        elif status_code >= 500:
            body["error"] = "internal server error (logged)"
        if status_code == 401:
            self.set_header("WWW-Authenticate", f'Bearer realm="{self.REALM}"')
        if status_code == 405:
            allowed = ", ".join(m.upper() for m in self.implemented_methods())
            self.set_header("Allow", allowed)
            body["error"] = f"{self.request.method} is not allowed here; allowed: {allowed}"
        self.finish(body)

    @classmethod
    def implemented_methods(cls) -> list[str]:
        return [m for m in METHODS if getattr(cls, m) is not getattr(tornado.web.RequestHandler, m)]


class NotFoundHandler(BaseHandler):
    """Every path no route matches: a JSON 404 (whatever the method)."""

    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no such route: {self.request.path}")
