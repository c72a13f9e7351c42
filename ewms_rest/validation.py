"""Request validation against the OpenAPI document, with answers a person can act on.

A service's document (its package's `schema/openapi.json`) is the single statement of what each
route takes; this module reads each operation's body schema and query parameters from it and checks requests
with `jsonschema` (OpenAPI 3.1 schemas are JSON Schema 2020-12). Errors name the field with
its path (e.g. `tasks[0].worker_config.n_cores`) and the rule it broke. They never echo the
offending value: bodies carry environment variables and may be huge.
"""

import dataclasses
import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev deps
import referencing
import referencing.jsonschema
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

DOC_URI = "urn:ewms-rest:openapi"
MAX_ERRORS = 10
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One problem with a request: where, and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidRequest(ValueError):
    """The request breaks the OpenAPI document; `errors` says where and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def load_openapi(package: str, resource: str = "schema/openapi.json") -> dict[str, Any]:
    """A service's OpenAPI document, as shipped in its package."""
    text = resources.files(package).joinpath(resource).read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


@dataclasses.dataclass(frozen=True)
class _Parameter:
    name: str
    required: bool
    validator: jsonschema.protocols.Validator


@dataclasses.dataclass(frozen=True)
class Operation:
    """What one (route, method) accepts, compiled from the document."""

    body: jsonschema.protocols.Validator | None
    body_required: bool
    query: tuple[_Parameter, ...]
    path: tuple[_Parameter, ...]


class RequestValidator:
    """Validates bodies, query and path arguments of every operation in the document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = referencing.Resource.from_contents(doc, default_specification=referencing.jsonschema.DRAFT202012)
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(DOC_URI, resource)
        self.operations: dict[tuple[str, str], Operation] = {}
        for route, item in doc["paths"].items():
            for method, operation in item.items():
                if method != "parameters":
                    self.operations[(route, method)] = self._compile(route, method, item, operation)

    def _validator(self, pointer: str) -> jsonschema.protocols.Validator:
        """A validator for the schema at `pointer` in the document, `$ref`s resolved within it."""
        return jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=self._registry)

    def _compile(self, route: str, method: str, item: dict[str, Any], operation: dict[str, Any]) -> Operation:
        base = f"/paths/{_escape(route)}"
        params = [(f"{base}/parameters/{i}", p) for i, p in enumerate(item.get("parameters", []))]
        params += [(f"{base}/{method}/parameters/{i}", p) for i, p in enumerate(operation.get("parameters", []))]
        compiled: dict[str, list[_Parameter]] = {"query": [], "path": []}
        for pointer, param in params:
            param = self._resolve(param)
            compiled[param["in"]].append(
                _Parameter(param["name"], bool(param.get("required")), self._validator(f"{pointer}/schema"))
            )
        body = operation.get("requestBody")
        return Operation(
            body=self._validator(f"{base}/{method}/requestBody/content/application~1json/schema") if body else None,
            body_required=bool(body and body.get("required")),
            query=tuple(compiled["query"]),
            path=tuple(compiled["path"]),
        )

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            obj = self._registry.resolver(DOC_URI).lookup(obj["$ref"]).contents
        return obj

    def operation(self, route: str, method: str) -> Operation:
        return self.operations[(route, method.lower())]

    def body(self, route: str, method: str, raw: bytes) -> dict[str, Any]:
        """The decoded, validated JSON body (`{}` for an absent optional body)."""
        op = self.operation(route, method)
        if op.body is None:
            return {}
        if not raw:  # no body at all; whitespace is not one (it is not JSON either)
            if op.body_required:
                raise InvalidRequest([FieldError("(body)", "a JSON object is required")])
            return {}
        body = decode_json(raw)
        check(op.body, body, prefix="")
        check_storable(body, raw)
        return body

    def query(self, route: str, method: str, arguments: dict[str, list[bytes]]) -> dict[str, Any]:
        """The declared query arguments, typed and validated; undeclared ones are ignored (as upstream EWMS)."""
        op = self.operation(route, method)
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        for param in op.query:
            raw = arguments.get(param.name)
            if not raw:
                if param.required:
                    errors.append(FieldError(f"query argument {param.name!r}", "is required"))
                continue
            value = raw[-1].decode("utf-8", errors="replace")
            errors += [FieldError(f"query argument {param.name!r}", r) for r in _reasons(param.validator, value)]
            values[param.name] = value
        if errors:
            raise InvalidRequest(errors)
        return values

    def path(self, route: str, method: str, arguments: dict[str, str]) -> None:
        """Path arguments (ids) match their declared form."""
        errors = [
            FieldError(param.name, reason)
            for param in self.operation(route, method).path
            for reason in _reasons(param.validator, arguments.get(param.name, ""))
        ]
        if errors:
            raise InvalidRequest(errors)


def decode_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from bytes, or `InvalidRequest` saying what is wrong with it."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise _body_error("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _body_error(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # NaN / Infinity
        raise _body_error(str(exc)) from None
    except RecursionError:
        raise _body_error("is nested too deeply") from None
    if not isinstance(body, dict):
        raise _body_error(f"must be a JSON object, not {_json_type(body)}")
    return body


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_LONG_NUMBER = re.compile(rb"[0-9]{19}")  # the shortest integer beyond 64 bits has 19 digits


def check_storable(body: Any, raw: bytes) -> None:
    """`InvalidRequest` for what MongoDB cannot store or search, naming where: integers beyond 64 bits and field
    names holding a NUL. Bodies are stored and searched there; a schema cannot say either."""
    if b"\\u0000" in raw or _LONG_NUMBER.search(raw):  # a NUL can only come escaped: most bodies skip the walk
        try:
            problem = _unstorable(body, "")
        except RecursionError:
            raise _body_error("is nested too deeply") from None
        if problem is not None:
            raise InvalidRequest([problem])


def _unstorable(value: Any, where: str) -> FieldError | None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if "\x00" in key:
                return FieldError(where or "(body)", "a field name contains a NUL character (\\u0000)")
            if (found := _unstorable(inner, field_path(where, [_short(key)]))) is not None:
                return found
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            if (found := _unstorable(inner, field_path(where, [i]))) is not None:
                return found
    elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return FieldError(where or "(body)", "is an integer beyond 64 bits (what the database stores)")
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"is not valid JSON ({name} is not a JSON number)")


def _body_error(reason: str) -> InvalidRequest:
    return InvalidRequest([FieldError("(body)", reason)])


def check(validator: jsonschema.protocols.Validator, instance: Any, prefix: str) -> None:
    """Raise `InvalidRequest` with every (up to `MAX_ERRORS`) problem of `instance`."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        found = _unique(f for error in errors for f in _describe(error, prefix))
        raise InvalidRequest(found[:MAX_ERRORS])


def _reasons(validator: jsonschema.protocols.Validator, value: Any) -> list[str]:
    return [f.reason for e in validator.iter_errors(value) for f in _describe(e, "")]


def _unique(errors: Iterable[FieldError]) -> list[FieldError]:
    return list(dict.fromkeys(errors))


def field_path(prefix: str, path: Iterable[Any]) -> str:
    """`tasks[0].worker_config` from the path ['tasks', 0, 'worker_config']."""
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


def _describe(error: ValidationError, prefix: str) -> list[FieldError]:
    """Readable field errors for one jsonschema error."""
    path = list(error.absolute_path)
    here = field_path(prefix, path)
    keyword, rule, instance = error.validator, error.validator_value, error.instance
    if keyword == "required":
        return [FieldError(field_path(prefix, [*path, m]), "is required") for m in rule if m not in instance]
    if keyword == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        hint = f" (allowed: {', '.join(known)})" if known else ""
        extras = [k for k in instance if k not in known]
        return [FieldError(field_path(prefix, [*path, _short(k)]), f"is not an allowed field{hint}") for k in extras]
    if keyword in ("anyOf", "oneOf") and error.context:
        return _describe_alternatives(error, prefix, here)
    if "propertyNames" in error.schema_path:  # the instance is the key itself
        return [FieldError(here, f"key {_short(str(instance))!r} {_reason(error)}")]
    return [FieldError(here, _reason(error))]


def _describe_alternatives(error: ValidationError, prefix: str, here: str) -> list[FieldError]:
    """For 'one of these forms': report the form that came closest, or list the types allowed."""
    types = [s.get("type") for s in error.validator_value if isinstance(s, dict) and "type" in s]
    deeper = [e for e in error.context if e.validator != "type"]
    if deeper:
        best = jsonschema.exceptions.best_match(deeper)
        if best is not None:
            return _describe(best, prefix)
    if types:
        return [FieldError(here, f"must be {' or '.join(map(str, types))}, not {_json_type(error.instance)}")]
    return [FieldError(here, "matches none of the allowed forms")]


def _reason(error: ValidationError) -> str:
    rule, instance = error.validator_value, error.instance
    match error.validator:
        case "type":
            return f"must be {rule if isinstance(rule, str) else ' or '.join(rule)}, not {_json_type(instance)}"
        case "minLength":
            return f"must be at least {rule} character(s) long"
        case "maxLength":
            return f"must be at most {rule} characters long (got {len(instance)})"
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than"}
            return f"must be {words.get(str(error.validator), 'less than')} {rule}"
        case "pattern":
            return f"must match the pattern {rule}"
        case "enum":
            return f"must be one of: {', '.join(json.dumps(v) for v in rule)}"
        case "minItems" | "minProperties":
            return f"must have at least {rule} {'item' if error.validator == 'minItems' else 'field'}(s)"
        case "maxItems" | "maxProperties":
            return f"must have at most {rule} {'items' if error.validator == 'maxItems' else 'fields'}"
        case "uniqueItems":
            return "must not repeat items"
    return f"breaks the rule {error.validator!r}"


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _short(key: str, limit: int = 40) -> str:
    """A key as shown in an error: printable and short (keys may be attacker-chosen)."""
    key = re.sub(r"[^\x20-\x7e]", "?", key)
    return key if len(key) <= limit else key[:limit] + "..."


def _escape(route: str) -> str:
    """A route as a JSON pointer token."""
    return route.replace("~", "~0").replace("/", "~1")
