"""What every WMS handler shares: JSON errors, validated input, visibility of workflows.

Handlers extend `rest_tools.server.RestHandler` (token validation, request logging). Each
names its OpenAPI path template in `ROUTE`; `body()`, `query()` and path checks validate
against that operation in the document, so the document and the code cannot drift apart
without a 400 or a test saying so.
"""

import http
import logging
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import tornado.web
from rest_tools.server import RestHandler

from ..auth import sees_everything
from ..context import AppContext
from ..database import DatabaseError
from ..errors import ApiError
from ..validation import FieldError, InvalidRequest

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
METHODS = ("get", "post", "put", "patch", "delete")


class BaseHandler(RestHandler):
    """JSON in, JSON out, errors as `{"code", "error", "errors"}`."""

    ROUTE: ClassVar[str] = ""

    def initialize(self, ctx: AppContext, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.ctx = ctx
        self.role_claim = ctx.config.auth_role_claim
        self.roles: set[str] = set()
        self.subject = ""

    # -- input -----------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        """The request's JSON body, validated against this operation's schema."""
        return self._validated(
            lambda: self.ctx.validator.body(self.ROUTE, self.request.method or "", self.request.body)
        )

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

    def now(self) -> float:
        return self.ctx.clock()

    # -- who sees what ---------------------------------------------------------------------------

    def visible(self, doc: dict[str, Any] | None) -> bool:
        """Admins and TMSs see everything; a user sees what it owns."""
        return doc is not None and (sees_everything(self.roles) or doc.get("owner") == self.subject)

    def may_change(self, doc: dict[str, Any] | None) -> bool:
        """Only an admin or the owner may act on a workflow."""
        return doc is not None and ("admin" in self.roles or doc.get("owner") == self.subject)

    def scope(self) -> dict[str, Any]:
        """The filter that limits a search to what the caller may see."""
        return {} if sees_everything(self.roles) else {"owner": self.subject}

    # -- output ----------------------------------------------------------------------------------

    def send(self, obj: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.write(obj)

    def write_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Every error as JSON: a message a person can act on, and the fields at fault for bad input."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DatabaseError):  # MongoDB unreachable: say so, the caller may retry
            status_code = 503
            self.set_status(status_code)
        body: dict[str, Any] = {"code": status_code, "error": http.HTTPStatus(status_code).phrase}
        if isinstance(exc, ApiError):
            body["error"] = exc.message
            if exc.errors:
                body["errors"] = [{"field": e.field, "reason": e.reason} for e in exc.errors]
        elif status_code == 503:
            body["error"] = "the database does not answer; try again later"
        elif status_code >= 500:
            body["error"] = "internal server error (logged)"
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="ewms-wms"')
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
