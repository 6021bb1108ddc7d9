"""Argo's prometheus and web metric providers against real loopback HTTP servers:
the result a condition sees and the value a measurement shows, as
``metricproviders/prometheus`` (``processResponse``) and ``metricproviders/webmetric``
(``parseResponse``: non-2xx is an error, JSON narrowed by jsonPath, text as is) give them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshpilot.api.argo_analysis import Metric
from meshpilot.delivery.argo.metric_providers import (
    HttpMeasurer,
    MeasureError,
    prometheus_result,
)


def test_a_vector_is_a_list_of_values_and_reads_as_argo_writes_it() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1, "0.97"]}, {"metric": {}, "value": [1, "1"]}]}}
    assert prometheus_result(body) == ("[0.97 1]", [0.97, 1.0])


def test_a_scalar_is_a_number_and_an_empty_vector_an_empty_list() -> None:
    assert prometheus_result({"status": "success", "data": {
        "resultType": "scalar", "result": [1, "2.5"]}}) == ("2.5", 2.5)
    assert prometheus_result({"status": "success", "data": {
        "resultType": "vector", "result": []}}) == ("[]", [])


def test_a_failed_query_is_an_error() -> None:
    with pytest.raises(MeasureError, match="bad_data"):
        prometheus_result({"status": "error", "error": "bad_data"})


@contextmanager
def serving(status: int, body: bytes,
            content_type: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback server answering every request so; yields its URL and what it saw."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"method": self.command, "path": self.path,
                         "body": self.rfile.read(length).decode(),
                         "x-token": self.headers.get("X-Token")})
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def web_metric(url: str, **web: Any) -> Metric:
    return Metric.model_validate({"name": "m", "provider": {"web": {"url": url, **web}}})


def test_web_json_is_narrowed_by_json_path_and_a_post_sends_its_body() -> None:
    measurer = HttpMeasurer()
    document = json.dumps({"data": {"ok": True, "rates": [0.9, 0.99]}}).encode()
    with serving(200, document, "application/json") as (url, seen):
        value, result = measurer.measure(web_metric(
            f"{url}/check", method="POST", jsonBody={"q": 1}, jsonPath="{$.data.rates[1]}",
            headers=[{"key": "X-Token", "value": "t"}]))
    measurer.close()
    assert (value, result) == ("0.99", 0.99)
    assert seen == [{"method": "POST", "path": "/check", "body": '{"q": 1}', "x-token": "t"}]


def test_web_text_is_the_result_and_non_2xx_is_an_error() -> None:
    measurer = HttpMeasurer()
    with serving(200, b"ok", "text/plain") as (url, _):
        assert measurer.measure(web_metric(url)) == ("ok", "ok")
    with serving(503, b"{}", "application/json") as (url, _), pytest.raises(
            MeasureError, match="503"):
        measurer.measure(web_metric(url))
    with serving(200, b'{"a": 1}', "application/json") as (url, _), pytest.raises(
            MeasureError, match="JSONPath"):
        measurer.measure(web_metric(url, jsonPath="{$.b}"))
    measurer.close()
