"""The leader lease in DynamoDB: ``autoscaler.ha.LeaseBackend`` over conditional writes.

Why DynamoDB: it is the coordination service every AWS account already has, and a conditional
``UpdateItem`` is a compare-and-set with strong consistency on one item, which is all a lease
needs. One item per lease name in a table whose partition key is ``name`` (string); the table
is created by the deployment (the controller's role needs no CreateTable), e.g.::

    aws dynamodb create-table --table-name autoscaler-lease \\
        --attribute-definitions AttributeName=name,AttributeType=S \\
        --key-schema AttributeName=name,KeyType=HASH --billing-mode PAY_PER_REQUEST

Every write is a single conditional ``UpdateItem`` returning the new item, so a reply either
proves we hold the lease or (``ConditionalCheckFailedException``) proves we do not; anything
else (network, throttling, 5xx after botocore's retries) is "unknown" and raised as
``LeaseUnavailableError``, which the elector treats as "keep the local deadline, retry".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from autoscaler.aws.gameliftstreams import to_service_error
from autoscaler.ha import LeaseRecord, LeaseUnavailableError

CONDITION_FAILED = "ConditionalCheckFailedException"

# DynamoDB reserves "name" and "token": attribute names always go through placeholders.
_NAMES = {"#n": "name", "#h": "holder", "#e": "expires_at", "#t": "token"}


def _record(item: Mapping[str, Any]) -> LeaseRecord:
    return LeaseRecord(
        name=str(item["name"]["S"]),
        holder=str(item["holder"]["S"]),
        expires_at=float(item["expires_at"]["N"]),
        token=int(item["token"]["N"]),
    )


def _num(value: float) -> dict[str, str]:
    return {"N": repr(float(value))}


class DynamoDbLease:
    """One named lease in ``table``, through an aiobotocore ``dynamodb`` client."""

    def __init__(self, client: Any, *, table: str, name: str) -> None:
        self._client = client
        self.table = table
        self.name = name

    async def _update(self, op: str, **params: Any) -> LeaseRecord | None:
        try:
            response = await self._client.update_item(
                TableName=self.table,
                Key={"name": {"S": self.name}},
                ReturnValues="ALL_NEW",
                **params,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                return None
            raise LeaseUnavailableError(str(to_service_error(op, exc))) from exc
        except Exception as exc:
            raise LeaseUnavailableError(str(to_service_error(op, exc))) from exc
        return _record(response["Attributes"])

    async def acquire(self, holder: str, now: float, duration_s: float) -> LeaseRecord | None:
        return await self._update(
            "UpdateItem(acquire)",
            UpdateExpression="SET #h = :me, #e = :exp ADD #t :one",
            ConditionExpression="attribute_not_exists(#n) OR #e < :now OR #h = :me",
            ExpressionAttributeNames=_NAMES,
            ExpressionAttributeValues={
                ":me": {"S": holder},
                ":exp": _num(now + duration_s),
                ":now": _num(now),
                ":one": {"N": "1"},
            },
        )

    async def renew(
        self, holder: str, token: int, now: float, duration_s: float
    ) -> LeaseRecord | None:
        return await self._update(
            "UpdateItem(renew)",
            UpdateExpression="SET #e = :exp",
            ConditionExpression="#h = :me AND #t = :tok",
            ExpressionAttributeNames={"#h": "holder", "#e": "expires_at", "#t": "token"},
            ExpressionAttributeValues={
                ":me": {"S": holder},
                ":tok": {"N": str(token)},
                ":exp": _num(now + duration_s),
            },
        )

    async def release(self, holder: str, token: int) -> bool:
        record = await self._update(
            "UpdateItem(release)",
            UpdateExpression="SET #e = :zero",
            ConditionExpression="#h = :me AND #t = :tok",
            ExpressionAttributeNames={"#h": "holder", "#e": "expires_at", "#t": "token"},
            ExpressionAttributeValues={
                ":me": {"S": holder},
                ":tok": {"N": str(token)},
                ":zero": _num(0.0),
            },
        )
        return record is not None

    async def read(self) -> LeaseRecord | None:
        try:
            response = await self._client.get_item(
                TableName=self.table, Key={"name": {"S": self.name}}, ConsistentRead=True
            )
        except Exception as exc:
            raise LeaseUnavailableError(str(to_service_error("GetItem", exc))) from exc
        item = response.get("Item")
        return None if item is None else _record(item)


@asynccontextmanager
async def open_dynamodb_lease(
    region: str,
    *,
    table: str,
    name: str,
    endpoint_url: str | None = None,
    profile: str | None = None,
    timeout_s: float = 2.0,
) -> AsyncIterator[DynamoDbLease]:
    """A lease client whose every call gives up within a few seconds: a lease request that
    hangs is worse than one that fails (the elector retries before its deadline)."""
    session = AioSession(profile=profile)
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 2},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    async with session.create_client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        yield DynamoDbLease(client, table=table, name=name)
