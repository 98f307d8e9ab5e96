"""An external policy over HTTP: POST what the controller knows, get a capacity back.

Why: some teams already have a capacity model (a matchmaker's queue, a marketing calendar,
an ML service) in another language or process. This plugin asks it, in the controller's
terms, and keeps every safety property of a built-in plugin: the answer is validated strictly,
rounded to the tenancy and capped at the location's maximum bound, and then passes the guards
like any other. When anything goes wrong (unreachable, slow, TLS failure, not HTTP 200, too
large, not JSON, wrong shape or capacity model, missing token) the ``fallback`` policy answers
(default: hold the current capacity) and the reason says what failed, so one bad deploy of the
external service costs nothing but its own advice.

Request: ``POST url`` with ``Content-Type: application/json``, body (camelCase; NaN and
missing values are ``null``)::

    {"apiVersion": "autoscaler.gameliftstreams/webhook-v1", "now": <epoch s>,
     "group": {"id", "arn", "streamClass", "status", "primaryLocation"},
     "location": "us-east-2",
     "sample": {"at", "status", "allocated", "idle", "inUse", "waiting",
                "oldestWaitingSeconds", "arrivals", "placementFailures", "departures",
                "complete", "setting": {"alwaysOn", "targetIdle", "maximum", "onDemand"}},
     "history": {"rows", "spanSeconds", "inUseMean", "inUseMax", "inUseP95",
                 "arrivalsPerSecond", "points",
                 "at": [...], "inUse": [...], "waiting": [...], "arrivals": [...]},
     "bounds": {"minCapacity", "maxCapacity"}, "tenancy": 2, "capacityModel": "current",
     "slo": {"instant", "failed"}, "leadTimeSeconds", "intervalSeconds", "pricePerSlotHour"}

``history`` summarises every stored row and lists the last ``historyPoints`` of them.

Response: HTTP 200 with a JSON object, exactly these keys (unknown keys are an error, numbers
must be JSON numbers, capacities integers ≥ 0)::

    current model: {"alwaysOn": 4, "targetIdle": 2, "maximum": 20, "reason": "...",
                    "forecastInUse": 3.5}            # forecastInUse optional
    legacy model:  {"alwaysOn": 4, "onDemand": 6, "reason": "..."}

Transport: the stdlib's ``urllib`` (``decide`` is synchronous and runs in a worker thread
under the tick's deadline), TLS verified with the system trust store or ``caBundle``,
redirects never followed (they could carry the bearer token elsewhere), ``timeoutSeconds``
for the whole call, connecting included (the socket is cut at the deadline, so a server that
trickles its status line, headers or body is cut off then), at most ``maxResponseBytes`` read.
The bearer token is read from the environment variable named by ``bearerTokenEnv`` at call
time (trailing whitespace, such as a secret file's newline, stripped): it is never in the
policy file, never in a reason, never logged. A webhook on this machine (loopback) is called
without any ``HTTP(S)_PROXY``, which would otherwise receive the token in clear. A monotonic
clock is read only for that network deadline, never for a decision.

The plugin is not a pure function of its context, so composites never replay it to measure
its forecast error (``replayable = False``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, ClassVar, Self

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import override

from autoscaler.domain.classes import round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.policy.builtin.chain import (
    CompositeParams,
    CompositePlugin,
    PolicyRef,
    as_model,
    cap_to_bounds,
    hold,
    run_policy,
)
from autoscaler.policy.plugin import PolicyContext, UnknownPluginError

API_VERSION = "autoscaler.gameliftstreams/webhook-v1"
_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
# RFC 6750's token68 characters: what an Authorization header can carry as a bearer token.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CHUNK = 16_384
_REASON_CHARS = 300
_USER_AGENT = "gameliftstreams-autoscaler-webhook/1"


class WebhookParams(CompositeParams):
    """``params`` of a ``webhook`` policy file (camelCase in YAML)."""

    url: str = Field(description="http(s) URL the context is POSTed to.")
    timeout_seconds: float = Field(
        default=2.0, gt=0.0, le=30.0, alias="timeoutSeconds", description="Seconds."
    )
    verify: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_bundle: str | None = Field(
        default=None,
        alias="caBundle",
        description="PEM file of CA certificates to trust instead of the system store.",
    )
    max_response_bytes: int = Field(
        default=65_536, ge=256, le=16_777_216, alias="maxResponseBytes", description="Bytes."
    )
    bearer_token_env: str | None = Field(
        default=None,
        alias="bearerTokenEnv",
        description="Name of the environment variable holding a bearer token (not the token).",
    )
    history_points: int = Field(
        default=60, ge=0, le=10_080, alias="historyPoints", description="History rows sent."
    )
    fallback: PolicyRef | None = Field(
        default=None, description="Policy {plugin, params} used on any failure; None: hold."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host (got {v!r})")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: use bearerTokenEnv")
        if parts.fragment:
            raise ValueError("the URL must not have a #fragment")
        return v

    @field_validator("bearer_token_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME_RE.fullmatch(v):
            raise ValueError(
                "expected the NAME of an environment variable holding the token (uppercase "
                "letters, digits, '_', e.g. AUTOSCALER_WEBHOOK_TOKEN), never the token itself"
            )
        return v

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        parts = urllib.parse.urlsplit(self.url)
        if self.ca_bundle is not None and (not self.verify or parts.scheme != "https"):
            raise ValueError("caBundle needs an https:// url and verify: true")
        plain = parts.scheme == "http" and parts.hostname not in _LOOPBACK
        if self.bearer_token_env is not None and plain:
            raise ValueError("a bearer token is only sent over https (or to localhost)")
        return self


class WebhookAnswer(BaseModel):
    """The external service's answer, validated strictly."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    always_on: int = Field(ge=0, alias="alwaysOn")
    target_idle: int | None = Field(default=None, ge=0, alias="targetIdle")
    maximum: int | None = Field(default=None, ge=0)
    on_demand: int | None = Field(default=None, ge=0, alias="onDemand")
    reason: str = Field(min_length=1, max_length=2000)
    forecast_in_use: float | None = Field(default=None, ge=0.0, alias="forecastInUse")


class WebhookError(Exception):
    """The call failed; the message is safe to show (no token, no body beyond a snippet)."""


class _Deadline:
    """Cuts a call's socket at an absolute (monotonic) deadline.

    urllib's ``timeout`` bounds each socket operation, not the call: a server that trickles
    its status line and headers a byte at a time keeps it waiting indefinitely. Every
    connection the call opens is shut down by a timer when the deadline passes, which ends any
    read in progress."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.hit = False
        self._timers: list[threading.Timer] = []

    def connection(
        self, base: type[http.client.HTTPConnection]
    ) -> type[http.client.HTTPConnection]:
        deadline = self

        class Connection(base):  # type: ignore[misc,valid-type]
            def connect(self) -> None:
                super().connect()
                sock = self.sock

                def cut() -> None:
                    deadline.hit = True
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

                timer = threading.Timer(max(0.0, deadline.at - time.monotonic()), cut)
                timer.daemon = True
                deadline._timers.append(timer)
                timer.start()

        return Connection

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._connection = deadline.connection(http.client.HTTPConnection)

    @override
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._tls_context = context
        self._connection = deadline.connection(http.client.HTTPSConnection)

    @override
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._tls_context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    @override
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _series(values: np.ndarray[Any, Any]) -> list[float | None]:
    return [_num(float(v)) for v in values]


def request_body(ctx: PolicyContext, points: int) -> dict[str, Any]:
    """The JSON document POSTed for ``ctx`` (module docstring has the schema)."""
    s = ctx.sample
    h = ctx.history
    n = len(h)
    in_use = h.in_use[np.isfinite(h.in_use)] if n else h.in_use
    arrivals = h.arrivals[np.isfinite(h.arrivals)] if n else h.arrivals
    at = h.at[np.isfinite(h.at)] if n else h.at
    span = float(at.max() - at.min()) if at.size >= 2 else 0.0
    tail = slice(max(0, n - points), n) if points else slice(0, 0)
    return {
        "apiVersion": API_VERSION,
        "now": ctx.now,
        "group": {
            "id": ctx.group.group_id,
            "arn": ctx.group.arn,
            "streamClass": ctx.group.stream_class,
            "status": ctx.group.status,
            "primaryLocation": ctx.group.primary_location,
        },
        "location": ctx.location,
        "sample": {
            "at": _num(s.at),
            "status": s.status,
            "allocated": s.allocated,
            "idle": s.idle,
            "inUse": s.in_use,
            "waiting": s.waiting,
            "oldestWaitingSeconds": _num(s.oldest_waiting_s),
            "arrivals": s.arrivals,
            "placementFailures": s.placement_failures,
            "departures": s.departures,
            "lateStarts": s.late_starts,
            "complete": s.complete,
            "setting": {
                "alwaysOn": s.setting.always_on,
                "targetIdle": s.setting.target_idle,
                "maximum": s.setting.maximum,
                "onDemand": s.setting.on_demand,
            },
        },
        "history": {
            "rows": n,
            "spanSeconds": span,
            "inUseMean": float(in_use.mean()) if in_use.size else None,
            "inUseMax": float(in_use.max()) if in_use.size else None,
            "inUseP95": float(np.quantile(in_use, 0.95)) if in_use.size else None,
            "arrivalsPerSecond": float(arrivals.sum()) / span if span > 0 else None,
            "points": len(range(n)[tail]),
            "at": _series(h.at[tail]),
            "inUse": _series(h.in_use[tail]),
            "waiting": _series(h.waiting[tail]),
            "arrivals": _series(h.arrivals[tail]),
        },
        "bounds": {
            "minCapacity": ctx.bounds.min_capacity,
            "maxCapacity": ctx.bounds.max_capacity,
        },
        "tenancy": ctx.tenancy,
        "capacityModel": ctx.capacity_model.value,
        "slo": {"instant": ctx.slo.instant, "failed": ctx.slo.failed},
        "leadTimeSeconds": ctx.lead_time_s,
        "intervalSeconds": ctx.interval_s,
        "pricePerSlotHour": ctx.price_per_slot_hour,
    }


def _short(text: str) -> str:
    clean = "".join(c if c.isprintable() else " " for c in text).strip()
    return clean if len(clean) <= _REASON_CHARS else clean[: _REASON_CHARS - 1] + "…"


class WebhookPolicy(CompositePlugin):
    """Plugin ``webhook``: an external HTTP service decides; any failure → ``fallback``."""

    name: str = "webhook"
    Params: ClassVar[type[BaseModel]] = WebhookParams
    replayable: ClassVar[bool] = False  # see chain.forecast_error

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, WebhookParams):
            raise TypeError(f"expected WebhookParams, got {type(params).__name__}")
        host = urllib.parse.urlsplit(params.url).netloc
        try:
            raw = self._call(params, ctx)
            return self._answer(raw, params, ctx, host)
        except WebhookError as error:
            return self._fallback(params, ctx, f"webhook {host} failed: {error}")

    def _call(self, params: WebhookParams, ctx: PolicyContext) -> bytes:
        body = json.dumps(request_body(ctx, params.history_points), allow_nan=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        token = ""
        if params.bearer_token_env is not None:
            # A secret mounted from a file usually ends in a newline: not part of the token.
            token = os.environ.get(params.bearer_token_env, "").strip()
            if not token:
                raise WebhookError(
                    f"environment variable {params.bearer_token_env} (bearer token) is not set"
                )
            if not _TOKEN_RE.fullmatch(token):
                raise WebhookError(
                    f"environment variable {params.bearer_token_env} (bearer token) holds"
                    " characters an HTTP header cannot carry (whitespace or control characters"
                    " inside it)"
                )
            headers["Authorization"] = f"Bearer {token}"
        deadline = _Deadline(time.monotonic() + params.timeout_seconds)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect(), _HTTPHandler(deadline)]
        if urllib.parse.urlsplit(params.url).hostname in _LOOPBACK:
            # Never through an HTTP(S)_PROXY: a plain-http request to this machine would hand
            # the proxy the bearer token, and a proxy cannot reach our loopback anyway.
            handlers.append(urllib.request.ProxyHandler({}))
        if params.url.startswith("https"):
            handlers.append(_HTTPSHandler(deadline, self._tls(params)))
        opener = urllib.request.build_opener(*handlers)
        # S310: the scheme was checked to be http(s) when the params were validated.
        request = urllib.request.Request(  # noqa: S310
            params.url, data=body, headers=headers, method="POST"
        )
        try:
            return self._exchange(opener, request, params, token, deadline)
        finally:
            deadline.cancel()

    def _exchange(
        self,
        opener: urllib.request.OpenerDirector,
        request: urllib.request.Request,
        params: WebhookParams,
        token: str,
        deadline: _Deadline,
    ) -> bytes:
        limit = params.max_response_bytes
        timed_out = f"timed out after {params.timeout_seconds:g}s"
        try:
            with opener.open(request, timeout=params.timeout_seconds) as response:
                if response.status != 200:
                    raise WebhookError(f"HTTP {response.status} (expected 200)")
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise WebhookError(f"response of {declared} bytes > maxResponseBytes {limit}")
                chunks: list[bytes] = []
                size = 0
                while size <= limit:
                    chunk = response.read1(min(_CHUNK, limit + 1 - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if time.monotonic() > deadline.at:
                        raise WebhookError(timed_out)
                if size > limit:
                    raise WebhookError(f"response larger than maxResponseBytes {limit}")
                if deadline.hit:  # cut at the deadline: what was read is not the whole reply
                    raise WebhookError(timed_out)
                return b"".join(chunks)
        except urllib.error.HTTPError as error:
            raise WebhookError(f"HTTP {error.code} (expected 200)") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError) or deadline.hit:
                raise WebhookError(timed_out) from None
            raise WebhookError(f"cannot reach it: {_short(str(reason))}") from None
        except TimeoutError:
            raise WebhookError(timed_out) from None
        except (OSError, ValueError, http.client.HTTPException) as error:  # reset, TLS, …
            if deadline.hit:  # our own cut at the deadline
                raise WebhookError(timed_out) from None
            text = str(error).replace(token, "***") if token else str(error)
            raise WebhookError(f"{type(error).__name__}: {_short(text)}") from None

    def _tls(self, params: WebhookParams) -> ssl.SSLContext:
        if not params.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cafile=params.ca_bundle)
        except (OSError, ssl.SSLError) as error:
            raise WebhookError(f"caBundle {params.ca_bundle!r} unusable: {error}") from None

    def _answer(
        self, raw: bytes, params: WebhookParams, ctx: PolicyContext, host: str
    ) -> Recommendation:
        try:
            answer = WebhookAnswer.model_validate_json(raw)
        except pydantic.ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "response"
            raise WebhookError(
                f"invalid answer ({error.error_count()} problem(s); {where}: {first['msg']})"
            ) from None
        t = ctx.tenancy
        if ctx.capacity_model is CapacityModel.LEGACY:
            if answer.on_demand is None or answer.target_idle is not None or answer.maximum:
                raise WebhookError("the group uses the legacy model: answer alwaysOn + onDemand")
            always_on = round_up_to_tenancy(answer.always_on, t)
            ceiling = round_up_to_tenancy(answer.always_on + answer.on_demand, t)
            setting = CapacitySetting(
                always_on=always_on, on_demand=max(ceiling, always_on) - always_on
            )
        else:
            if answer.on_demand is not None or answer.target_idle is None or answer.maximum is None:
                raise WebhookError(
                    "the group uses the current model: answer alwaysOn, targetIdle and maximum"
                )
            always_on = round_up_to_tenancy(answer.always_on, t)
            setting = CapacitySetting(
                always_on=always_on,
                target_idle=round_up_to_tenancy(answer.target_idle, t),
                maximum=max(round_up_to_tenancy(answer.maximum, t), always_on),
            )
        capped = cap_to_bounds(setting, ctx)
        note = f", capped at maxCapacity {ctx.bounds.max_capacity}" if capped != setting else ""
        return Recommendation(
            setting=capped,
            reason=f"webhook {host}: {_short(answer.reason)}; {capped.describe()}"
            f" (tenancy {t}{note})",
            forecast_in_use=answer.forecast_in_use,
        )

    def _fallback(self, params: WebhookParams, ctx: PolicyContext, why: str) -> Recommendation:
        if params.fallback is None:
            return hold(ctx, f"{why}; fallback: hold", fallback=why)
        try:
            plugin = self.registry.get(params.fallback.plugin)
        except UnknownPluginError as error:
            answer_why = f"{why}; fallback unavailable ({error})"
            return hold(ctx, answer_why, fallback=answer_why)
        answer = run_policy(plugin, params.fallback.params, ctx)
        if isinstance(answer, str):
            answer_why = f"{why}; fallback failed too ({answer})"
            return hold(ctx, answer_why, fallback=answer_why)
        return dataclasses.replace(
            answer,
            setting=as_model(answer.setting, ctx),
            reason=f"{why}; fallback {params.fallback.plugin}: {answer.reason}",
            fallback=why,
        )
