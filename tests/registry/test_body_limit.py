"""BodyLimit on a real uvicorn server on 127.0.0.1: bodies over the limit are answered 413
before they are read whole (declared, chunked, or with Expect: 100-continue), bodies within
it reach the app whole."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn

from visprompt.registry.serving import BodyLimit

LIMIT = 1000


class Echo:
    """The app behind the limit: answers how many body bytes it received."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps({"got": size}).encode()})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int, Echo]]:
    echo = Echo()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(BodyLimit(echo, LIMIT), host="127.0.0.1", port=port, log_level="error")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    yield "127.0.0.1", port, echo
    running.should_exit = True
    thread.join(timeout=10)


def _post(host: str, port: int, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{host}:{port}/invocations", body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_body_within_the_limit_reaches_the_app_whole(server) -> None:
    assert _post(*server[:2], b"x" * LIMIT) == (200, {"got": LIMIT})


def test_a_client_that_sends_an_oversized_body_reads_a_413_naming_the_limit(server) -> None:
    host, port, echo = server
    calls = echo.calls
    status, answer = _post(host, port, b"x" * (LIMIT * 5))
    assert status == 413 and answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "5,000 exceeds the serving limit max_request_bytes=1,000" in answer["message"]
    assert "VISPROMPT_SERVING_MAX_REQUEST_BYTES" in answer["message"]
    assert echo.calls == calls  # the app never saw it


def test_a_declared_length_is_refused_before_the_body_is_sent(server) -> None:
    host, port, echo = server
    calls = echo.calls
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
        )  # a gigabyte announced, not a byte of it sent
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "1,000,000,000 exceeds" in answer and echo.calls == calls


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server) -> None:
    host, port, echo = server
    calls = echo.calls
    connection = http.client.HTTPConnection(host, port, timeout=10)
    chunks = iter([b"x" * 600] * 3)  # no Content-Length: sent chunked
    connection.request("POST", "/invocations", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    # refused once the count passes 1,000: after the second chunk, or after the third where
    # the server read two chunks in one go
    assert re.search(r"\b1,[28]00 exceeds", json.loads(response.read())["message"])
    assert echo.calls == calls
