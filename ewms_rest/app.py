"""The tornado application of a service: one route per handler class, JSON 404 for the rest."""

import re
from collections.abc import Iterable
from typing import Any

import tornado.web
from rest_tools.server import RestHandlerSetup, RestServer

from .handler import BaseHandler, HandlerContext


def route_regex(template: str) -> str:
    """`/v1/workflows/{workflow_id}` -> `/v1/workflows/(?P<workflow_id>[^/]+)$`."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"


def build_app(
    handlers: Iterable[type[BaseHandler]],
    ctx: HandlerContext,
    auth: dict[str, Any],
    server_header: str,
    not_found: type[BaseHandler],
) -> tornado.web.Application:
    """Routes from each handler's `ROUTE`; `auth` is `rest_tools`' auth section (secret or OpenID)."""
    setup = RestHandlerSetup({"auth": auth, "server_header": server_header})  # type: ignore[no-untyped-call]
    # no per-path route stats: rest_tools keys them by the concrete path, so every id would add an entry forever
    kwargs: dict[str, Any] = {**setup, "route_stats": None, "ctx": ctx}
    server = RestServer()  # type: ignore[no-untyped-call]
    for handler in handlers:
        server.add_route(route_regex(handler.ROUTE), handler, kwargs)  # type: ignore[no-untyped-call]
    return tornado.web.Application(
        server.routes, default_handler_class=not_found, default_handler_args=kwargs, **server.app_args
    )
