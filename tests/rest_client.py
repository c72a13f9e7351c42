"""An HTTP client for the services' REST APIs in tests: a bearer token, and every answer checked against the
service's OpenAPI document with openapi-core, so the document stays the truth about the routes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from typing import Any

import openapi_core
from openapi_core.datatypes import RequestParameters
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from werkzeug.datastructures import Headers, ImmutableMultiDict


@dataclasses.dataclass
class Response:
    status: int
    json: Any
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class _OpenAPIRequest:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclasses.dataclass
class _OpenAPIResponse:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


class Client:
    """HTTP calls to the WMS as one bearer token; answers are checked against the OpenAPI document."""

    def __init__(self, base_url: str, token: str | None, spec: openapi_core.OpenAPI, doc: dict[str, Any]) -> None:
        self.base_url = base_url
        self.token = token
        self.spec = spec
        self.doc = doc
        self.http = AsyncHTTPClient()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        query: dict[str, str] | None = None,
        validate: bool = True,
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = HTTPRequest(url, method=method, headers=headers, body=data, allow_nonstandard_methods=True)
        answer = await self.http.fetch(request, raise_error=False)
        response = Response(answer.code, _json(answer.body), dict(answer.headers), answer.body or b"")
        if validate:
            self.check_against_openapi(method, path, query or {}, data, response)
        return response

    def check_against_openapi(
        self, method: str, path: str, query: dict[str, str], data: bytes | None, response: Response
    ) -> None:
        """The answer is one the document promises for this route (routes it does not know are skipped)."""
        if not _documented(self.doc, method, path):
            return
        request = _OpenAPIRequest(
            host_url=self.base_url,
            path=path,
            method=method.lower(),
            body=data,
            content_type="application/json",
            parameters=RequestParameters(query=ImmutableMultiDict(query)),
        )
        answer = _OpenAPIResponse(
            response.status, response.headers.get("Content-Type", "").split(";")[0], Headers(response.headers),
            response.body,
        )  # fmt: skip
        self.spec.validate_response(request, answer)

    async def get(self, path: str, **kwargs: Any) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Response:
        return await self.request("POST", path, body, **kwargs)


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _documented(doc: dict[str, Any], method: str, path: str) -> bool:
    """Whether the document has an operation for this method and concrete path."""
    for template, item in doc["paths"].items():
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in item:
            return True
    return False
