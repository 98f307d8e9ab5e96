"""The protocol layer on its own: botocore's real serializer and parser on one side, the
emulator's compiled spec on the other, no HTTP in between."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from autoscaler.domain.errors import ValidationError
from autoscaler.twin.protocol import (
    ServiceSpec,
    decode_token,
    encode_token,
    paginate,
    region_from_authorization,
)

GROUP_ARN = "arn:aws:gameliftstreams:us-west-2:123456789012:streamgroup/sg-abc"

# values that satisfy the model's patterns, by shape name; everything else is generated
SAMPLES: dict[str, Any] = {
    "Identifier": "sg-abc",
    "Arn": GROUP_ARN,
    "Id": "sg-abc",
    "Description": "a group",
    "LocationName": "us-west-2",
    "ClientToken": "c" * 40,
    "IamRoleArn": "arn:aws:iam::123456789012:role/streaming",
    "OutputUri": "s3://bucket/out.zip",
    "ApplicationLogOutputUri": "s3://bucket/logs",
    "Ipv4CidrBlock": "10.0.0.0/16",
    "UserId": "player-1",
    "EnvironmentVariablesKeyString": "KEY",
}


def sample(shape: Any) -> Any:
    """A valid value of ``shape`` with every member filled (lists and maps of one)."""
    if shape.name in SAMPLES:
        return SAMPLES[shape.name]
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        return {name: sample(member) for name, member in shape.members.items()}
    if kind == "list":
        return [sample(shape.member)]
    if kind == "map":
        return {sample(shape.key): sample(shape.value)}
    if kind == "string":
        enum = getattr(shape, "enum", None)
        return enum[0] if enum else "x" * max(1, meta.get("min", 1))
    if kind in ("integer", "long"):
        return int(meta.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 1_767_225_600
    return "x"


def serialize(spec: ServiceSpec, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request botocore itself would send."""
    serializer = create_serializer("rest-json", include_validation=False)
    return serializer.serialize_to_request(params, spec.service.operation_model(operation))  # type: ignore[no-any-return]


def parse_back(spec: ServiceSpec, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    query_string = request["query_string"]
    if isinstance(query_string, str):
        query = parse_qs(query_string, keep_blank_values=True)
    else:
        query = {
            k: [str(x) for x in (v if isinstance(v, list) else [v])]
            for k, v in query_string.items()
        }
    matched = spec.match(request["method"], request["url_path"], list(query))
    assert matched is not None, f"no route for {request['method']} {request['url_path']}"
    op, labels = matched
    body = request["body"]
    if isinstance(body, str):
        body = body.encode()
    return op.name, spec.parse(op, labels, query, request["headers"], body)


def test_every_operation_of_the_model_round_trips_through_botocore_serializer(
    spec: ServiceSpec,
) -> None:
    assert len(spec.operations) >= 30
    for name in spec.service.operation_names:
        input_shape = spec.service.operation_model(name).input_shape
        params = sample(input_shape) if input_shape is not None else {}
        routed, parsed = parse_back(spec, serialize(spec, name, params))
        assert routed == name
        assert parsed == params, name


def test_status_codes_and_methods_come_from_the_model(spec: ServiceSpec) -> None:
    assert spec.operations["CreateStreamGroup"].status == 201
    assert spec.operations["DeleteStreamGroup"].status == 204
    assert spec.operations["GetStreamGroup"].status == 200
    assert spec.operations["UpdateStreamGroup"].method == "PATCH"
    assert spec.error_status["ThrottlingException"] == 429
    assert spec.error_status["ServiceQuotaExceededException"] == 402


def test_an_arn_label_with_slashes_and_colons_is_decoded(spec: ServiceSpec) -> None:
    request = serialize(spec, "ListTagsForResource", {"ResourceArn": GROUP_ARN})
    assert "%2F" in request["url_path"]
    assert parse_back(spec, request) == ("ListTagsForResource", {"ResourceArn": GROUP_ARN})


def test_routes_need_the_right_method_and_the_whole_path(spec: ServiceSpec) -> None:
    assert spec.match("PUT", "/streamgroups/sg-1") is None
    assert spec.match("GET", "/streamgroups/sg-1/nothing") is None
    assert spec.match("GET", "/_emulator/usage") is None
    matched = spec.match("GET", "/streamgroups/sg-1/streamsessions/s-2")
    assert matched is not None
    assert matched[0].name == "GetStreamSession"
    assert matched[1] == {"Identifier": "sg-1", "StreamSessionIdentifier": "s-2"}


def _validation_message(spec: ServiceSpec, operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_back(spec, serialize(spec, operation, params))
    return caught.value.message


def test_validation_names_each_field_and_constraint(spec: ServiceSpec) -> None:
    message = _validation_message(
        spec,
        "CreateStreamGroup",
        {
            "Description": "d" * 81,
            "StreamClass": "gen9_huge",
            "LocationConfigurations": [{"LocationName": "us-west-2", "AlwaysOnCapacity": -2}],
        },
    )
    assert message.startswith("3 validation errors detected: ")
    assert "'Description' failed to satisfy constraint: Member must have length less" in message
    assert "'StreamClass' failed to satisfy constraint: Member must satisfy enum" in message
    assert "'LocationConfigurations[0].AlwaysOnCapacity'" in message
    assert "greater than or equal to 0" in message


def test_validation_of_required_members_and_patterns(spec: ServiceSpec) -> None:
    message = _validation_message(spec, "StartStreamSession", {"Identifier": "sg 1"})
    for field in ("Protocol", "SignalRequest", "ApplicationIdentifier"):
        assert f"'{field}' failed to satisfy constraint: Member must not be null" in message
    assert "'Identifier' failed to satisfy constraint: Member must satisfy regular" in message


def test_query_integers_are_converted_and_range_checked(spec: ServiceSpec) -> None:
    op = spec.operations["ListStreamGroups"]
    assert spec.parse(op, {}, {"MaxResults": ["7"]}, {}, b"") == {"MaxResults": 7}
    for bad, words in (("abc", "be of type integer"), ("0", "greater than or equal to 1")):
        with pytest.raises(ValidationError, match=words):
            spec.parse(op, {}, {"MaxResults": [bad]}, {}, b"")
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        spec.parse(op, {}, {"MaxResults": ["101"]}, {}, b"")


def test_a_body_that_is_not_a_json_object_is_rejected(spec: ServiceSpec) -> None:
    op = spec.operations["CreateStreamGroup"]
    for body in (b"{not json", b"[1, 2]"):
        with pytest.raises(ValidationError, match="JSON"):
            spec.parse(op, {}, {}, {}, body)


def test_output_serialization_is_what_botocore_parses(spec: ServiceSpec) -> None:
    op = spec.operations["GetStreamGroup"]
    created = 1_767_225_600.25
    response = spec.response(
        op,
        {
            "Arn": GROUP_ARN,
            "Id": "sg-abc",
            "Status": "ACTIVE",
            "StatusReason": None,  # None members are left out
            "CreatedAt": created,
            "LocationStates": [{"LocationName": "us-west-2", "AllocatedCapacity": 4}],
            "NotAMember": "dropped",
        },
        "req-1",
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    parsed = create_parser("rest-json").parse(
        {"status_code": 200, "headers": _lower(response.headers), "body": response.body},
        spec.service.operation_model("GetStreamGroup").output_shape,
    )
    assert parsed["CreatedAt"] == datetime.fromtimestamp(created, tz=UTC)
    assert parsed["LocationStates"] == [{"LocationName": "us-west-2", "AllocatedCapacity": 4}]
    assert "StatusReason" not in parsed
    assert b"NotAMember" not in response.body
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_operations_without_output_answer_with_an_empty_body(spec: ServiceSpec) -> None:
    response = spec.response(spec.operations["DeleteStreamGroup"], None, "r")
    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("ResourceNotFoundException", 404),
        ("ConflictException", 409),
        ("ServiceQuotaExceededException", 402),
        ("ThrottlingException", 429),
        ("InternalServerException", 500),
    ],
)
def test_errors_are_what_botocore_reads(spec: ServiceSpec, code: str, status: int) -> None:
    response = spec.error(code, "it went wrong", "req-9")
    assert response.status == status
    assert response.headers["x-amzn-ErrorType"] == code
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": _lower(response.headers), "body": response.body},
        spec.service.operation_model("GetStreamGroup").output_shape,
    )
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == "it went wrong"


def test_region_comes_from_the_sigv4_credential_scope() -> None:
    header = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-central-1/gameliftstreams/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
    )
    assert region_from_authorization(header) == "eu-central-1"
    assert region_from_authorization(None) == "us-west-2"
    assert region_from_authorization("Bearer token") == "us-west-2"


def _walk(items: list[tuple[float, str]], size: int) -> tuple[list[tuple[float, str]], int]:
    seen: list[tuple[float, str]] = []
    token: str | None = None
    pages = 0
    while True:
        page, token = paginate(items, lambda item: item, scope="s", token=token, max_results=size)
        seen += page
        pages += 1
        if token is None:
            return seen, pages


def test_pages_cover_every_item_once_in_the_listing_order() -> None:
    items = [(float(i // 3), f"id-{(i * 7) % 23:02d}") for i in range(23)]
    assert _walk(items, 5) == (items, 5)
    assert _walk(items, 23) == (items, 1)
    assert paginate([], lambda item: item, scope="s", token=None, max_results=5) == ([], None)


def test_a_page_resumes_after_its_last_item_even_when_that_item_is_gone() -> None:
    items = [(float(i), f"id-{i}") for i in range(10)]
    first, token = paginate(items, lambda item: item, scope="s", token=None, max_results=4)
    assert first == items[:4]
    remaining = [item for item in items if item != items[3]]  # the last one served ended
    second, _ = paginate(remaining, lambda item: item, scope="s", token=token, max_results=4)
    assert second == items[4:8]
    newer = [*items, (20.0, "id-new")]  # items appended meanwhile come at the end
    second, _ = paginate(newer, lambda item: item, scope="s", token=token, max_results=100)
    assert second == [*items[4:], (20.0, "id-new")]


def test_tokens_are_bound_to_their_listing() -> None:
    token = encode_token("ListStreamSessions|sg-1", (1.0, "a"))
    assert decode_token(token, "ListStreamSessions|sg-1") == (1.0, "a")
    for bad_token, scope in (
        (token, "ListStreamSessions|sg-2"),
        ("garbage!", "ListStreamSessions|sg-1"),
        (encode_token("x", (1.0, "a"))[:-4], "x"),
    ):
        with pytest.raises(ValidationError, match="NextToken"):
            decode_token(bad_token, scope)


def _lower(headers: dict[str, str]) -> dict[str, str]:
    """HTTP headers as botocore sees them: case-insensitive, here lower-cased."""
    return {key.lower(): value for key, value in headers.items()}
