"""The rest-json wire protocol of GameLift Streams, derived from botocore's service model.

Routes, HTTP methods, status codes, input locations (uri / querystring / header / body),
input constraints, output shapes and error status codes are all read at run time from the
service model that ships with botocore, so the emulator speaks exactly what the real clients
(aiobotocore, the AWS CLI) send and parse, and follows the model when botocore updates it.
Nothing here is typed in by hand except the protocol's own rules.

Everything is compiled once per ``ServiceSpec`` into small closures (validators, decoders,
serializers): the per-request path never walks botocore's shape objects.

This module knows no HTTP server: it turns (method, raw path, query, headers, body) into an
operation name and a dict of input members, and a dict of output members into (status,
headers, body bytes). ``twin/emulator.py`` puts it behind aiohttp.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from operator import attrgetter
from typing import Any, TypeVar
from urllib.parse import unquote

from botocore.loaders import Loader
from botocore.model import ServiceModel as BotocoreServiceModel

from autoscaler.domain.errors import ValidationError

SERVICE_NAME = "gameliftstreams"
DEFAULT_REGION = "us-west-2"
JSON_CONTENT_TYPE = "application/json"

# (value, path, errors): appends one message per violated constraint.
Validator = Callable[[Any, str, list[str]], None]
# Python value -> JSON-ready value; ``None`` in a compiled tree means "pass through as is".
Serializer = Callable[[Any], Any]

_encode_json = json.JSONEncoder(separators=(",", ":")).encode  # built once, not per response
_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/[^/,\s]+/aws4_request")


def region_from_authorization(header: str | None, default: str = DEFAULT_REGION) -> str:
    """The region of a SigV4 ``Authorization`` header's credential scope (any key is fine)."""
    if header:
        match = _CREDENTIAL.search(header)
        if match:
            return match.group(1)
    return default


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fail(path: str, constraint: str) -> str:
    return f"Value at '{path}' failed to satisfy constraint: Member must {constraint}"


def validation_message(errors: Sequence[str]) -> str:
    """AWS's wording: ``N validation error(s) detected: …; …``."""
    plural = "s" if len(errors) > 1 else ""
    return f"{len(errors)} validation error{plural} detected: " + "; ".join(errors)


def _compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """Smithy patterns are ECMA regexes, not implicitly anchored; skip any Python rejects."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return re.compile(pattern)
        except re.error:
            return None


def _format_timestamp(value: Any, fmt: str) -> Any:
    if isinstance(value, datetime):
        seconds = value.timestamp()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        return value  # already a wire string
    if fmt == "iso8601":
        when = datetime.fromtimestamp(seconds, tz=UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    if fmt == "rfc822":
        return formatdate(seconds, usegmt=True)
    return _round_ms(seconds)


def _round_ms(seconds: float) -> float:
    """``seconds`` to the millisecond, as AWS sends epoch timestamps; 4x cheaper than
    ``round(x, 3)``. The result is the double nearest a whole number of milliseconds, so its
    JSON has at most 3 decimals; a value a rounding error away from a half millisecond may
    go the other way than ``round`` takes it."""
    return math.floor(seconds * 1000.0 + 0.5) / 1000.0


def _parse_timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Compiler:
    """Builds validators, decoders and serializers from botocore shapes, memoised by shape."""

    def __init__(self) -> None:
        self._validators: dict[str, Validator] = {}
        self._serializers: dict[tuple[str, str, str], Serializer | None] = {}
        self._decoders: dict[str, Serializer | None] = {}

    # --- validation (inputs) ------------------------------------------------------------
    def validator(self, shape: Any) -> Validator:
        name: str = shape.name
        cached = self._validators.get(name)
        if cached is not None:
            return cached
        slot: list[Validator] = []

        def forward(value: Any, path: str, errors: list[str]) -> None:
            slot[0](value, path, errors)  # a recursive shape, resolved once built

        self._validators[name] = forward
        built = self._build_validator(shape)
        slot.append(built)
        self._validators[name] = built
        return built

    def _build_validator(self, shape: Any) -> Validator:
        kind: str = shape.type_name
        meta: Mapping[str, Any] = shape.metadata
        low: int | float | None = meta.get("min")
        high: int | float | None = meta.get("max")
        if kind == "structure":
            return self._structure_validator(shape)
        if kind == "list":
            return self._list_validator(self.validator(shape.member), low, high)
        if kind == "map":
            return self._map_validator(
                self.validator(shape.key), self.validator(shape.value), low, high
            )
        if kind == "string":
            enum = tuple(getattr(shape, "enum", None) or ())
            raw_pattern = meta.get("pattern")
            pattern = _compile_pattern(raw_pattern) if raw_pattern else None
            return self._string_validator(low, high, enum, pattern, raw_pattern)
        if kind in ("integer", "long"):
            return self._number_validator(low, high, integral=True)
        if kind in ("float", "double"):
            return self._number_validator(low, high, integral=False)
        if kind == "boolean":

            def check_bool(value: Any, path: str, errors: list[str]) -> None:
                if not isinstance(value, bool):
                    errors.append(_fail(path, "be a boolean"))

            return check_bool
        if kind == "timestamp":

            def check_timestamp(value: Any, path: str, errors: list[str]) -> None:
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    errors.append(_fail(path, "be a timestamp"))

            return check_timestamp

        def check_any(value: Any, path: str, errors: list[str]) -> None:
            return None

        return check_any

    def _structure_validator(self, shape: Any) -> Validator:
        members = tuple((name, self.validator(member)) for name, member in shape.members.items())
        required = tuple(shape.required_members)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, dict):
                errors.append(_fail(path or "body", "be a structure"))
                return
            for name in required:
                if value.get(name) is None:
                    errors.append(_fail(_join(path, name), "not be null"))
            for name, member_check in members:
                item = value.get(name)
                if item is not None:
                    member_check(item, _join(path, name), errors)

        return check

    @staticmethod
    def _list_validator(member: Validator, low: Any, high: Any) -> Validator:
        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, list):
                errors.append(_fail(path, "be a list"))
                return
            if low is not None and len(value) < low:
                errors.append(_fail(path, f"have length greater than or equal to {low}"))
            if high is not None and len(value) > high:
                errors.append(_fail(path, f"have length less than or equal to {high}"))
            for index, item in enumerate(value):
                if item is None:
                    errors.append(_fail(f"{path}[{index}]", "not be null"))
                else:
                    member(item, f"{path}[{index}]", errors)

        return check

    @staticmethod
    def _map_validator(key: Validator, val: Validator, low: Any, high: Any) -> Validator:
        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, dict):
                errors.append(_fail(path, "be a map"))
                return
            if low is not None and len(value) < low:
                errors.append(_fail(path, f"have at least {low} entries"))
            if high is not None and len(value) > high:
                errors.append(_fail(path, f"have at most {high} entries"))
            for item_key, item in value.items():
                key(item_key, f"{path} key", errors)
                if item is None:
                    errors.append(_fail(f"{path}.{item_key}", "not be null"))
                else:
                    val(item, f"{path}.{item_key}", errors)

        return check

    @staticmethod
    def _string_validator(
        low: Any,
        high: Any,
        enum: tuple[str, ...],
        pattern: re.Pattern[str] | None,
        raw_pattern: str | None,
    ) -> Validator:
        enum_set = frozenset(enum)

        def check(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, str):
                errors.append(_fail(path, "be a string"))
                return
            if low is not None and len(value) < low:
                errors.append(_fail(path, f"have length greater than or equal to {low}"))
            if high is not None and len(value) > high:
                errors.append(_fail(path, f"have length less than or equal to {high}"))
            if enum_set and value not in enum_set:
                errors.append(_fail(path, f"satisfy enum value set: [{', '.join(enum)}]"))
            if pattern is not None and pattern.search(value) is None:
                errors.append(_fail(path, f"satisfy regular expression pattern: {raw_pattern}"))

        return check

    @staticmethod
    def _number_validator(low: Any, high: Any, *, integral: bool) -> Validator:
        def check(value: Any, path: str, errors: list[str]) -> None:
            ok = isinstance(value, int) if integral else isinstance(value, int | float)
            if not ok or isinstance(value, bool):
                errors.append(_fail(path, "be an integer" if integral else "be a number"))
                return
            if low is not None and value < low:
                errors.append(_fail(path, f"have value greater than or equal to {low}"))
            if high is not None and value > high:
                errors.append(_fail(path, f"have value less than or equal to {high}"))

        return check

    # --- JSON body decoding (inputs): wire names -> member names -------------------------
    def decoder(self, shape: Any) -> Serializer | None:
        name: str = shape.name
        if name in self._decoders:
            return self._decoders[name]
        self._decoders[name] = None  # recursion guard: a cycle decodes as identity
        built = self._build_decoder(shape)
        self._decoders[name] = built
        return built

    def _build_decoder(self, shape: Any) -> Serializer | None:
        kind: str = shape.type_name
        if kind == "structure":
            members = tuple(
                (name, member.serialization.get("name", name), self.decoder(member))
                for name, member in shape.members.items()
            )
            if all(wire == name and sub is None for name, wire, sub in members):
                return None

            def decode_structure(value: Any) -> Any:
                if not isinstance(value, dict):
                    return value
                out: dict[str, Any] = {}
                for name, wire, sub in members:
                    if wire in value:
                        item = value[wire]
                        out[name] = item if sub is None or item is None else sub(item)
                return out

            return decode_structure
        if kind == "list":
            sub = self.decoder(shape.member)
            if sub is None:
                return None
            element = sub
            return lambda value: [element(x) for x in value] if isinstance(value, list) else value
        if kind == "map":
            sub = self.decoder(shape.value)
            if sub is None:
                return None
            entry = sub
            return lambda value: (
                {k: entry(v) for k, v in value.items()} if isinstance(value, dict) else value
            )
        if kind == "blob":
            return _decode_blob
        return None

    # --- serialization (outputs) ----------------------------------------------------------
    def serializer(self, shape: Any, where: str = "body") -> Serializer | None:
        fmt: str = shape.serialization.get("timestampFormat") or shape.metadata.get(
            "timestampFormat", ""
        )
        key = (shape.name, fmt, where)
        if key in self._serializers:
            return self._serializers[key]
        self._serializers[key] = None  # recursion guard
        built = self._build_serializer(shape, fmt, where)
        self._serializers[key] = built
        return built

    def _build_serializer(self, shape: Any, fmt: str, where: str) -> Serializer | None:
        kind: str = shape.type_name
        if kind == "structure":
            return self.structure_serializer(shape, tuple(shape.members))
        if kind == "list":
            sub = self.serializer(shape.member)
            if sub is None:
                return None
            element = sub
            return lambda value: [element(x) for x in value]
        if kind == "map":
            sub = self.serializer(shape.value)
            if sub is None:
                return None
            entry = sub
            return lambda value: {k: entry(v) for k, v in value.items()}
        if kind == "timestamp":
            # rest-json: epoch seconds in a body, RFC 822 in a header, unless the shape says
            default = "rfc822" if where == "header" else "unixTimestamp"
            chosen = fmt or default
            if chosen == "unixTimestamp":
                # the hot path (every CreatedAt of a listing): floats straight through
                return lambda value: (
                    _round_ms(value) if type(value) is float else _format_timestamp(value, chosen)
                )
            return lambda value: _format_timestamp(value, chosen)
        if kind == "blob":
            return _encode_blob
        return None

    def structure_serializer(self, shape: Any, names: Sequence[str]) -> Serializer:
        members = tuple(
            (
                name,
                shape.members[name].serialization.get("name", name),
                self.serializer(shape.members[name]),
            )
            for name in names
        )

        def serialize(value: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, wire, sub in members:
                item = value.get(name)
                if item is not None:
                    out[wire] = item if sub is None else sub(item)
            return out

        return serialize

    def object_serializer(
        self, shape: Any, attributes: Mapping[str, str]
    ) -> Callable[[Any], dict[str, Any]]:
        """Wire dict of a structure read straight off an object: ``attributes`` maps member
        names to attribute names. One pass, no intermediate member dict (list hot paths)."""
        unknown = set(attributes) - set(shape.members)
        if unknown:
            raise ValueError(f"{shape.name} has no member {', '.join(sorted(unknown))}")
        names = tuple(attributes)
        wires = tuple(shape.members[name].serialization.get("name", name) for name in names)
        subs = [self.serializer(shape.members[name]) for name in names]
        converted = tuple(
            (wire, sub) for wire, sub in zip(wires, subs, strict=True) if sub is not None
        )
        fields = tuple(attributes.values())
        get: Callable[[Any], tuple[Any, ...]]
        if len(fields) == 1:  # attrgetter of one name returns the bare value, not a tuple
            one = attrgetter(fields[0])
            get = lambda value: (one(value),)  # noqa: E731
        else:
            get = attrgetter(*fields)

        def serialize(value: Any) -> dict[str, Any]:
            # one C call for every attribute; conversions in place keep the member order
            items = zip(wires, get(value), strict=False)  # equal lengths by construction
            out = {wire: item for wire, item in items if item is not None}
            for wire, sub in converted:
                item = out.get(wire)
                if item is not None:
                    out[wire] = sub(item)
            return out

        return serialize


class WireBody(dict[str, Any]):
    """Output members already in wire form (built with ``ServiceSpec.object_serializer``):
    ``ServiceSpec.response`` encodes them as they are, skipping the generic serializer."""


def _encode_blob(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return value


def _decode_blob(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            return value
    return value


@dataclass(frozen=True, slots=True)
class _Param:
    """One input member carried outside the JSON body."""

    member: str
    wire: str  # label, query key or header name
    kind: str  # botocore type name of the member
    element_kind: str | None  # for lists: the member type


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation, compiled: route, inputs, output, status."""

    name: str
    method: str
    request_uri: str
    path_regex: re.Pattern[str]
    literal_query: tuple[tuple[str, str | None], ...]
    status: int
    uri_params: tuple[_Param, ...]
    query_params: tuple[_Param, ...]
    query_map_member: str | None
    header_params: tuple[_Param, ...]
    body_decoder: Serializer | None
    has_body: bool
    validate: Validator | None
    output_body: Serializer | None
    output_headers: tuple[tuple[str, str, Serializer | None], ...]
    output_status_member: str | None
    output_payload: str | None
    errors: frozenset[str]
    idempotency_member: str | None  # the ClientToken-like member, if the operation has one

    @property
    def literal_chars(self) -> int:
        return len(re.sub(r"\{[^}]*\}", "", self.request_uri))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ServiceSpec:
    """The compiled service model: route table, input parsing, output and error encoding."""

    def __init__(self, model: Mapping[str, Any], service_name: str = SERVICE_NAME) -> None:
        self.service = BotocoreServiceModel(model, service_name=service_name)
        self.protocol: str = self.service.metadata["protocol"]
        if self.protocol != "rest-json":
            raise ValueError(f"{service_name} speaks {self.protocol}, not rest-json")
        compiler = _Compiler()
        self._compiler = compiler
        self.error_status: dict[str, int] = {}
        for shape_name in self.service.shape_names:
            shape = self.service.shape_for(shape_name)
            if shape.metadata.get("exception"):
                status = shape.metadata.get("error", {}).get("httpStatusCode", 400)
                self.error_status[shape_name] = int(status)
        self.operations: dict[str, Operation] = {
            name: self._compile(compiler, name) for name in self.service.operation_names
        }
        by_method: dict[str, list[Operation]] = {}
        for op in self.operations.values():
            by_method.setdefault(op.method, []).append(op)
        # most literal route first, so a fixed segment wins over a label
        self._routes = {
            method: sorted(ops, key=lambda op: -op.literal_chars)
            for method, ops in by_method.items()
        }

    def object_serializer(
        self, shape_name: str, attributes: Mapping[str, str]
    ) -> Callable[[Any], dict[str, Any]]:
        """``_Compiler.object_serializer`` for the shape named ``shape_name`` of the model."""
        return self._compiler.object_serializer(self.service.shape_for(shape_name), attributes)

    @classmethod
    def load(cls, service_name: str = SERVICE_NAME) -> ServiceSpec:
        model = Loader().load_service_model(service_name, "service-2")
        return cls(model, service_name)

    # --- compile ---------------------------------------------------------------------------
    def _compile(self, compiler: _Compiler, name: str) -> Operation:
        op_model = self.service.operation_model(name)
        http: Mapping[str, Any] = op_model.http
        request_uri: str = http["requestUri"]
        path_part, _, query_part = request_uri.partition("?")
        literal_query: list[tuple[str, str | None]] = []
        for item in filter(None, query_part.split("&")):
            key, sep, value = item.partition("=")
            literal_query.append((key, value if sep else None))
        uri_params: list[_Param] = []
        query_params: list[_Param] = []
        header_params: list[_Param] = []
        query_map: str | None = None
        body_names: list[str] = []
        idempotency: str | None = None
        input_shape = op_model.input_shape
        if input_shape is not None:
            for member, shape in input_shape.members.items():
                if shape.metadata.get("idempotencyToken"):
                    idempotency = member
                location = shape.serialization.get("location")
                wire = shape.serialization.get("name", member)
                element = shape.member.type_name if shape.type_name == "list" else None
                param = _Param(member, wire, shape.type_name, element)
                if location == "uri":
                    uri_params.append(param)
                elif location == "querystring":
                    if shape.type_name == "map":
                        query_map = member
                    else:
                        query_params.append(param)
                elif location in ("header", "headers"):
                    header_params.append(param)
                else:
                    body_names.append(member)
        body_decoder: Serializer | None = None
        if input_shape is not None and body_names:
            decoders = {m: compiler.decoder(input_shape.members[m]) for m in body_names}
            wires = {m: input_shape.members[m].serialization.get("name", m) for m in body_names}
            body_decoder = _body_decoder(decoders, wires)
        output_shape = op_model.output_shape
        output_body: Serializer | None = None
        output_headers: list[tuple[str, str, Serializer | None]] = []
        status_member: str | None = None
        payload: str | None = None
        if output_shape is not None:
            payload = output_shape.serialization.get("payload")
            body_members: list[str] = []
            for member, shape in output_shape.members.items():
                location = shape.serialization.get("location")
                if location == "header":
                    output_headers.append(
                        (
                            member,
                            shape.serialization.get("name", member),
                            compiler.serializer(shape, "header"),
                        )
                    )
                elif location == "statusCode":
                    status_member = member
                elif member != payload:
                    body_members.append(member)
            if payload is not None:
                payload_shape = output_shape.members[payload]
                output_body = compiler.serializer(payload_shape) or (lambda value: value)
            else:
                output_body = compiler.structure_serializer(output_shape, body_members)
        return Operation(
            name=name,
            method=http["method"],
            request_uri=request_uri,
            path_regex=_path_regex(path_part),
            literal_query=tuple(literal_query),
            status=int(http.get("responseCode", 200)),
            uri_params=tuple(uri_params),
            query_params=tuple(query_params),
            query_map_member=query_map,
            header_params=tuple(header_params),
            body_decoder=body_decoder,
            has_body=bool(body_names),
            validate=compiler.validator(input_shape) if input_shape is not None else None,
            output_body=output_body,
            output_headers=tuple(output_headers),
            output_status_member=status_member,
            output_payload=payload,
            errors=frozenset(shape.name for shape in op_model.error_shapes),
            idempotency_member=idempotency,
        )

    # --- requests --------------------------------------------------------------------------
    def match(
        self, method: str, raw_path: str, query_keys: Sequence[str] = ()
    ) -> tuple[Operation, dict[str, str]] | None:
        """The operation whose route matches, and its URI labels (percent-decoded)."""
        for op in self._routes.get(method.upper(), ()):
            found = op.path_regex.fullmatch(raw_path)
            if found is None:
                continue
            if any(key not in query_keys for key, _ in op.literal_query):
                continue
            return op, {label: unquote(value) for label, value in found.groupdict().items()}
        return None

    def parse(
        self,
        op: Operation,
        labels: Mapping[str, str],
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        """Input members of one request, converted and validated (``ValidationError``)."""
        errors: list[str] = []
        params: dict[str, Any] = {}
        if op.has_body and body.strip():
            try:
                decoded = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise ValidationError("the request body is not valid JSON") from None
            if not isinstance(decoded, dict):
                raise ValidationError("the request body must be a JSON object")
            assert op.body_decoder is not None
            params.update(op.body_decoder(decoded))
        for param in op.uri_params:
            if param.wire in labels:
                params[param.member] = _convert(labels[param.wire], param.kind, param, errors)
        literal_keys = {key for key, _ in op.literal_query}
        for param in op.query_params:
            values = query.get(param.wire)
            if not values:
                continue
            if param.kind == "list":
                element = param.element_kind or "string"
                params[param.member] = [_convert(v, element, param, errors) for v in values]
            else:
                params[param.member] = _convert(values[0], param.kind, param, errors)
        if op.query_map_member is not None:
            known = {param.wire for param in op.query_params} | literal_keys
            extra = {k: v[0] for k, v in query.items() if k not in known and v}
            if extra:
                params[op.query_map_member] = extra
        if op.header_params:
            lowered = {k.lower(): v for k, v in headers.items()}
            for param in op.header_params:
                value = lowered.get(param.wire.lower())
                if value is not None:
                    params[param.member] = _convert(value, param.kind, param, errors)
        if not errors and op.validate is not None:
            op.validate(params, "", errors)
        if errors:
            raise ValidationError(validation_message(errors))
        return params

    # --- responses -------------------------------------------------------------------------
    def response(
        self, op: Operation, output: Mapping[str, Any] | None, request_id: str
    ) -> Response:
        headers = {"x-amzn-RequestId": request_id}
        status = op.status
        if output is None or op.output_body is None:
            return Response(status, headers, b"")
        for member, header, serialize in op.output_headers:
            value = output.get(member)
            if value is not None:
                headers[header] = str(value if serialize is None else serialize(value))
        if op.output_status_member is not None:
            status = int(output.get(op.output_status_member) or status)
        if op.output_payload is not None:
            value = output.get(op.output_payload)
            if value is None:
                return Response(status, headers, b"")
            if isinstance(value, bytes):
                return Response(status, headers, value)
            data = op.output_body(value)
        elif type(output) is WireBody:
            data = {name: value for name, value in output.items() if value is not None}
        else:
            data = op.output_body(output)
        headers["Content-Type"] = JSON_CONTENT_TYPE
        return Response(status, headers, _encode_json(data).encode())

    def error(
        self, code: str, message: str, request_id: str, status: int | None = None
    ) -> Response:
        """An error the way botocore's rest-json parser reads it: type header + message."""
        http_status = status if status is not None else self.error_status.get(code, 400)
        body = json.dumps({"message": message, "Message": message}).encode()
        headers = {
            "x-amzn-RequestId": request_id,
            "x-amzn-ErrorType": code,
            "Content-Type": JSON_CONTENT_TYPE,
        }
        return Response(http_status, headers, body)


def _body_decoder(
    decoders: Mapping[str, Serializer | None], wires: Mapping[str, str]
) -> Serializer:
    members = tuple((m, wires[m], decoders[m]) for m in decoders)

    def decode(body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, wire, sub in members:
            if wire in body:
                item = body[wire]
                out[name] = item if sub is None or item is None else sub(item)
        return out

    return decode


def _path_regex(path: str) -> re.Pattern[str]:
    """``/a/{B}/c/{D+}`` -> a regex on the raw (percent-encoded) path with named groups."""
    parts: list[str] = []
    position = 0
    for label in re.finditer(r"\{([^}]+)\}", path):
        parts.append(re.escape(path[position : label.start()]))
        name = label.group(1)
        if name.endswith("+"):
            parts.append(f"(?P<{name[:-1]}>.+)")
        else:
            parts.append(f"(?P<{name}>[^/]+)")
        position = label.end()
    parts.append(re.escape(path[position:]))
    return re.compile("".join(parts))


def _convert(text: str, kind: str, param: _Param, errors: list[str]) -> Any:
    """A string from a URI, query string or header, as the member's type."""
    try:
        if kind in ("integer", "long"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "timestamp":
            return _parse_timestamp(text)
    except (ValueError, binascii.Error):
        errors.append(_fail(param.member, f"be of type {kind}"))
        return None
    return text


_T = TypeVar("_T")


# --- pagination ------------------------------------------------------------------------------
# A NextToken is opaque to clients: here, the sort key of the last item served and the scope
# (operation and filters) it belongs to, so a token is never valid for another listing.
PageKey = tuple[float, str]


def encode_token(scope: str, key: PageKey) -> str:
    raw = json.dumps([scope, key[0], key[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str, scope: str) -> PageKey:
    """The page key in ``token``; ``ValidationError`` if it is not one of ours for ``scope``."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        token_scope, when, ident = decoded
        if token_scope != scope or not isinstance(ident, str):
            raise ValueError(token)
        return float(when), ident
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise ValidationError("Value at 'NextToken' is not a valid pagination token") from None


def encode_cursor_token(scope: str, cursor: int) -> str:
    """A NextToken holding a listing's integer cursor (the model's paged session listings)."""
    raw = json.dumps([scope, cursor], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor_token(token: str, scope: str) -> int:
    """The cursor in ``token``; ``ValidationError`` if it is not one of ours for ``scope``."""
    try:
        token_scope, cursor = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if token_scope != scope or type(cursor) is not int or cursor < 0:
            raise ValueError(token)
        return cursor
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise ValidationError("Value at 'NextToken' is not a valid pagination token") from None


def paginate(
    items: Sequence[_T],
    key: Callable[[_T], PageKey],
    *,
    scope: str,
    token: str | None,
    max_results: int | None,
    default_max: int = 25,
) -> tuple[list[_T], str | None]:
    """One page of ``items`` and the token of the next one.

    ``items`` must come in a stable order (the model lists in creation or end order, only
    appending and dropping). A page resumes right after the last item served; if that item
    is gone, at the first item whose ``key`` (created at, id) is past it. No sorting: a
    listing of thousands is scanned once, not sorted, per page.
    """
    start = 0
    if token is not None:
        last = decode_token(token, scope)
        start = len(items)
        for index, item in enumerate(items):
            item_key = key(item)
            if item_key == last:
                start = index + 1
                break
            if item_key > last and start == len(items):
                start = index  # fallback if ``last`` is not found further on
    size = default_max if max_results is None else max_results
    page = list(items[start : start + size])
    more = start + size < len(items)
    return page, encode_token(scope, key(page[-1])) if more and page else None
