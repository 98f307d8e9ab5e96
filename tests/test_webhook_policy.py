"""The ``webhook`` plugin against a real HTTP(S) server on 127.0.0.1 (threads)."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
    LocationHistory,
    Recommendation,
)
from autoscaler.policy.builtin.webhook import API_VERSION, WebhookParams, WebhookPolicy
from autoscaler.policy.config import check_policies
from autoscaler.policy.plugin import PluginRegistry, PolicyContext
from tests.policy_context import by_model
from tests.policy_context import make_ctx as shared_ctx

TOKEN = "s3cr3t-t0ken-value"  # a test value, checked never to leak
REPO = Path(__file__).resolve().parents[1]
ANSWER = {"alwaysOn": 3, "targetIdle": 1, "maximum": 9, "reason": "queue says so"}


@dataclass
class Reply:
    status: int = 200
    body: bytes = json.dumps(ANSWER).encode()
    delay_s: float = 0.0
    content_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Server:
    url: str
    reply: Reply = field(default_factory=Reply)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            reply = server.reply
            if reply.delay_s:
                server.release.wait(reply.delay_s)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if reply.content_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            # The client may give up (timeout, size limit): that is the test.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[ssl.SSLContext | None], Server]]:
    started: list[tuple[http.server.ThreadingHTTPServer, Server, threading.Thread]] = []

    def start(tls: ssl.SSLContext | None = None) -> Server:
        state = Server(url="")
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        httpd.daemon_threads = True
        httpd.block_on_close = False
        scheme = "http"
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
            scheme = "https"
        state.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}/decide"
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        started.append((httpd, state, thread))
        return state

    yield start
    for httpd, state, thread in started:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (generated with ``cryptography``)."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography is not installed")
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def make_ctx(
    *,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    history: LocationHistory | None = None,
    in_use: int = 4,
) -> PolicyContext:
    return shared_ctx(
        history,
        1_780_000_000.0,
        in_use=in_use,
        tenancy=tenancy,
        model=model,
        stream_class="gen4n_high",
        setting=by_model(
            model, current=CapacitySetting(2, 2, 6), legacy=CapacitySetting(2, on_demand=4)
        ),
        waiting=1,
        oldest_waiting_s=3.0,
        arrivals=2,
        departures=1,
        bounds=LocationBounds(0, 100),
        price_per_slot_hour=0.6571,
        lead_time=168.0,
    )


def registry() -> PluginRegistry:
    reg = PluginRegistry()
    reg.register("webhook", WebhookPolicy.for_registry(reg))
    return reg


def decide(raw: dict[str, Any], ctx: PolicyContext | None = None) -> Recommendation:
    reg = registry()
    return reg.get("webhook").decide(reg.validate_params("webhook", raw), ctx or make_ctx())


# ---------------------------------------------------------------------------------------------
# Success.


def test_success_sends_the_context_and_uses_the_answer(
    serve: Callable[[ssl.SSLContext | None], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(None)
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
    at = 1_780_000_000.0 - 60.0 * np.arange(100, 0, -1, dtype=np.float64)
    col = np.arange(100, dtype=np.float64)
    col[-1] = np.nan
    hist = LocationHistory(at, col, col, col, col, col, col, col, np.ones(100, dtype=np.bool_))
    server.reply.body = json.dumps({**ANSWER, "forecastInUse": 4.5}).encode()
    rec = decide(
        {"url": server.url, "bearerTokenEnv": "WEBHOOK_TOKEN", "historyPoints": 10},
        make_ctx(tenancy=2, history=hist),
    )
    assert rec.setting == CapacitySetting(4, 2, 10)  # rounded up to tenancy 2
    assert rec.forecast_in_use == 4.5
    assert rec.reason.startswith(
        f"webhook {urllib.parse.urlsplit(server.url).netloc}: queue says so"
    )
    assert TOKEN not in rec.reason
    [(headers, body)] = server.requests
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/json"
    assert body["apiVersion"] == API_VERSION
    assert body["location"] == "us-east-2"
    assert body["tenancy"] == 2
    assert body["capacityModel"] == "current"
    assert body["leadTimeSeconds"] == 168.0
    assert body["slo"] == {"instant": 0.99, "failed": 0.001}
    assert body["bounds"] == {"minCapacity": 0, "maxCapacity": 100}
    assert body["sample"]["inUse"] == 4
    assert body["sample"]["setting"] == {
        "alwaysOn": 2,
        "targetIdle": 2,
        "maximum": 6,
        "onDemand": None,
    }
    h = body["history"]
    assert (h["rows"], h["points"], len(h["inUse"])) == (100, 10, 10)
    assert h["inUse"][-1] is None  # NaN is sent as null
    assert h["inUseMax"] == 98.0
    assert h["at"][-1] == at[-1]


def test_legacy_answer(serve: Callable[[ssl.SSLContext | None], Server]) -> None:
    server = serve(None)
    server.reply.body = b'{"alwaysOn": 3, "onDemand": 5, "reason": "legacy"}'
    rec = decide({"url": server.url}, make_ctx(model=CapacityModel.LEGACY, tenancy=2))
    assert rec.setting == CapacitySetting(always_on=4, on_demand=4)  # 4 + 4 = 8 = 3 + 5


def test_answer_above_the_bound_is_capped(serve: Callable[[ssl.SSLContext | None], Server]) -> None:
    server = serve(None)
    server.reply.body = b'{"alwaysOn": 300, "targetIdle": 1, "maximum": 900, "reason": "big"}'
    rec = decide({"url": server.url})
    assert rec.setting == CapacitySetting(100, 1, 100)
    assert "capped at maxCapacity 100" in rec.reason


# ---------------------------------------------------------------------------------------------
# Failures → fallback.

HOLD = CapacitySetting(2, 2, 6)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply(body=b"{not json"), "invalid answer (1 problem(s); response: Invalid JSON"),
        (
            Reply(body=b'{"alwaysOn": "3", "targetIdle": 1, "maximum": 9, "reason": "x"}'),
            "alwaysOn",
        ),
        (Reply(body=b'{"alwaysOn": -1, "targetIdle": 1, "maximum": 9, "reason": "x"}'), "alwaysOn"),
        (Reply(body=json.dumps({**ANSWER, "extra": 1}).encode()), "extra: Extra inputs"),
        (Reply(body=b'{"alwaysOn": 3, "onDemand": 5, "reason": "x"}'), "current model"),
        (Reply(body=b"[]"), "invalid answer"),
        (Reply(status=500, body=b"oops"), "HTTP 500 (expected 200)"),
        (Reply(status=204, body=b""), "HTTP 204 (expected 200)"),
        (Reply(status=302, headers={"Location": "http://example.com/"}), "HTTP 302"),
        (Reply(body=b"x" * 70_000), "response of 70000 bytes > maxResponseBytes 65536"),
        (
            Reply(body=b" " * 70_000 + json.dumps(ANSWER).encode(), content_length=False),
            "response larger than maxResponseBytes 65536",
        ),
    ],
)
def test_bad_answers_fall_back_to_hold_and_say_why(
    serve: Callable[[ssl.SSLContext | None], Server], reply: Reply, problem: str
) -> None:
    server = serve(None)
    server.reply = reply
    rec = decide({"url": server.url})
    assert rec.setting == HOLD
    assert "webhook 127.0.0.1:" in rec.reason
    assert problem in rec.reason
    assert rec.reason.endswith("fallback: hold; holding always-on 2, target-idle 2, max 6")


def test_timeout(serve: Callable[[ssl.SSLContext | None], Server]) -> None:
    server = serve(None)
    server.reply.delay_s = 5.0
    started = time.monotonic()
    rec = decide({"url": server.url, "timeoutSeconds": 0.2})
    assert time.monotonic() - started < 2.0
    assert rec.setting == HOLD
    assert "timed out after 0.2s" in rec.reason


def test_unreachable_and_missing_token(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    rec = decide({"url": f"http://127.0.0.1:{port}/"})
    assert "cannot reach it" in rec.reason
    assert rec.fallback is not None  # reports count it
    assert "cannot reach it" in rec.fallback
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    rec = decide({"url": f"http://127.0.0.1:{port}/", "bearerTokenEnv": "NOT_SET_TOKEN"})
    assert "environment variable NOT_SET_TOKEN (bearer token) is not set" in rec.reason


def test_fallback_policy_answers_on_failure(
    serve: Callable[[ssl.SSLContext | None], Server],
) -> None:
    server = serve(None)
    server.reply = Reply(status=503)
    rec = decide(
        {
            "url": server.url,
            "fallback": {"plugin": "target-tracking", "params": {"targetUtilization": 0.5}},
        },
        make_ctx(in_use=4),
    )
    assert rec.setting.always_on == 10  # (4 in use + 1 waiting) / 0.5
    assert "HTTP 503 (expected 200); fallback target-tracking: target-tracking:" in rec.reason
    assert rec.fallback is not None
    assert rec.fallback.endswith("HTTP 503 (expected 200)")


# ---------------------------------------------------------------------------------------------
# TLS.


def _tls_server(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    return context


def test_tls_self_signed_fails_verification_unless_trusted(
    serve: Callable[[ssl.SSLContext | None], Server], cert: tuple[Path, Path]
) -> None:
    server = serve(_tls_server(cert))
    rec = decide({"url": server.url})
    assert rec.setting == HOLD
    assert "CERTIFICATE_VERIFY_FAILED" in rec.reason
    assert server.requests == []
    rec = decide({"url": server.url, "caBundle": str(cert[0])})
    assert rec.setting == CapacitySetting(3, 1, 9)
    rec = decide({"url": server.url, "verify": False})
    assert rec.setting == CapacitySetting(3, 1, 9)
    rec = decide({"url": server.url, "caBundle": str(cert[0].parent / "missing.pem")})
    assert "caBundle" in rec.reason
    assert rec.setting == HOLD


# ---------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ({"url": "ftp://example.com/"}, "expected an http:// or https:// URL"),
        ({"url": "https://user:pw@example.com/"}, "no credentials in the URL"),
        ({"url": "https://example.com/", "bearerTokenEnv": "abcd1234efgh"}, "never the token"),
        ({"url": "http://example.com/", "bearerTokenEnv": "TOKEN"}, "only sent over https"),
        ({"url": "http://example.com/", "caBundle": "/etc/ca.pem"}, "caBundle needs an https"),
        ({"url": "https://example.com/", "timeoutSeconds": 0}, "greater than 0"),
        ({"url": "https://example.com/", "maxResponseBytes": 10}, "greater than or equal to 256"),
        ({"url": "https://example.com/", "fallback": {"plugin": "nope"}}, "unknown policy plugin"),
        ({"url": "https://example.com/", "timeout": 2}, "Extra inputs"),
    ],
)
def test_invalid_params(raw: dict[str, Any], text: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=text):
        registry().validate_params("webhook", raw)


def test_valid_params_defaults() -> None:
    p = registry().validate_params(
        "webhook", {"url": "http://localhost:8080/x", "bearerTokenEnv": "T"}
    )
    assert isinstance(p, WebhookParams)
    assert (p.timeout_seconds, p.verify, p.max_response_bytes) == (2.0, True, 65_536)


def test_a_token_from_a_file_loses_its_newline_and_a_bad_one_never_shows(
    serve: Callable[[ssl.SSLContext | None], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kubernetes secret made from a file ends in a newline; the header refused it, and the
    error (the token included) became the reason, which the audit log keeps."""
    server = serve(None)
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN + "\n")
    rec = decide({"url": server.url, "bearerTokenEnv": "WEBHOOK_TOKEN"})
    assert rec.setting is not None
    [(headers, _)] = server.requests
    assert headers["authorization"] == f"Bearer {TOKEN}"
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN[:4] + "\n" + TOKEN[4:])
    rec = decide({"url": server.url, "bearerTokenEnv": "WEBHOOK_TOKEN"})
    assert "characters an HTTP header cannot carry" in rec.reason
    assert TOKEN[4:] not in rec.reason
    assert len(server.requests) == 1  # nothing sent


def test_a_loopback_webhook_never_goes_through_a_proxy(
    serve: Callable[[ssl.SSLContext | None], Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTP_PROXY set, urllib sent a request to http://localhost, bearer token included,
    in clear to the proxy."""
    proxied: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(1)
        proxy.settimeout(0.2)
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)
        server = serve(None)
        url = server.url.replace("127.0.0.1", "localhost")
        rec = decide({"url": url, "bearerTokenEnv": "WEBHOOK_TOKEN"})
        with contextlib.suppress(TimeoutError):
            conn, _ = proxy.accept()
            with conn:
                proxied.append(conn.recv(65536))
    assert proxied == []
    assert rec.setting is not None  # answered by the webhook itself
    assert len(server.requests) == 1


def test_validation_errors_never_echo_a_pasted_token_or_a_url_password(tmp_path: Path) -> None:
    """``autoscaler validate`` shows what was given beside each error: not for a key that
    names a secret (a token pasted into bearerTokenEnv), and not a URL's user and password."""
    shipped = (REPO / "policies" / "webhook.yaml").read_text()
    pasted = "ghp_R3alT0kenValue1234567890abcdef"
    (tmp_path / "a.yaml").write_text(
        shipped.replace("bearerTokenEnv: AUTOSCALER_WEBHOOK_TOKEN", f"bearerTokenEnv: {pasted}")
    )
    problems = check_policies([tmp_path]).all_problems
    assert any("bearerTokenEnv" in p and "not shown" in p for p in problems), problems
    assert not any(pasted in p for p in problems)
    (tmp_path / "a.yaml").write_text(shipped.replace("https://", "https://svc:P4ssw0rd-real@", 1))
    problems = check_policies([tmp_path]).all_problems
    assert any("no credentials in the URL" in p and "https://***@" in p for p in problems)
    assert not any("P4ssw0rd" in p for p in problems)


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline() -> None:
    """urllib's timeout bounds each read, not the call: a status line and headers sent a byte
    at a time kept ``decide`` waiting 22 s with ``timeoutSeconds: 2``."""
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    for byte in b"X-Slow: " + b"a" * 40 + b"\r\n":
                        if stop.wait(0.1):
                            return
                        conn.sendall(bytes([byte]))

        server = threading.Thread(target=trickle, daemon=True)
        server.start()
        started = time.monotonic()
        rec = decide(
            {"url": f"http://127.0.0.1:{listener.getsockname()[1]}/", "timeoutSeconds": 0.5}
        )
        took = time.monotonic() - started
        stop.set()
        server.join(timeout=5)
    assert took < 2.0
    assert rec.setting == HOLD
    assert "timed out after 0.5s" in rec.reason
