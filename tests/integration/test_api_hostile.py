"""Hostile input against a real control plane (issue 18): each refusal is a clear 4xx
with its position, the API keeps answering meanwhile, and nothing accepted is lost."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from tests.builders import service
from tests.conftest import ControlPlane, clean_env, read_endpoints, run_cli
from tests.integration.test_api import MP, SVC_PATH, VS_PATH, apply, revision, vs, yaml_text

HEALTH_TIMEOUT = 5.0


@pytest.fixture
def cp(control_plane_factory: Callable[..., ControlPlane]) -> ControlPlane:
    """A config-plane-only control plane: the API, validation and store are all real."""
    return control_plane_factory("state", args=["--no-mesh"])


def seed(c: httpx.Client) -> dict[str, Any]:
    """Two accepted objects; returns what the API serves for them."""
    r = apply(c, vs("reviews"), service("reviews"))
    assert r.status_code == 200, r.text
    return {"vs": c.get(f"{VS_PATH}/reviews").json(), "svc": c.get(f"{SVC_PATH}/reviews").json()}


def assert_kept(c: httpx.Client, before: dict[str, Any], rev: int) -> None:
    """Everything accepted before is still served as it was, and nothing was written."""
    assert c.get(f"{VS_PATH}/reviews").json() == before["vs"]
    assert c.get(f"{SVC_PATH}/reviews").json() == before["svc"]
    assert revision(c) == rev


@contextmanager
def health_polled(cp: ControlPlane) -> Iterator[list[tuple[int, float]]]:
    """Poll /healthz on its own connection while the block runs; yields the (status,
    seconds) of each answer. A poll that gets no answer within HEALTH_TIMEOUT is
    recorded as status 0."""
    answers: list[tuple[int, float]] = []
    stop = threading.Event()

    def poll() -> None:
        with cp.new_client(timeout=HEALTH_TIMEOUT) as client:
            while not stop.is_set() and len(answers) < 2000:
                start = time.monotonic()
                try:
                    status = client.get("/healthz").status_code
                except httpx.TimeoutException:
                    status = 0
                answers.append((status, time.monotonic() - start))
                stop.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=HEALTH_TIMEOUT + 5)


def diagnostics(r: httpx.Response) -> list[dict[str, Any]]:
    return list(r.json()["diagnostics"])


# --- 1. nesting depth -----------------------------------------------------------------

DEEP_SOURCES = [
    ("deep.json", "[" * 2_000 + "]" * 2_000, (1, 101)),
    ("deeper.json", '{"a":' * 100_000 + "1" + "}" * 100_000, (1, 501)),
    ("deep.yaml", "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(2_000)),
     (101, 201)),
    ("flow.yaml", "kind: [" + "[" * 100_000 + "]" * 100_001, (1, 106)),
]


@pytest.mark.parametrize(("file", "text", "where"), DEEP_SOURCES,
                         ids=[s[0] for s in DEEP_SOURCES])
def test_deeply_nested_file_is_refused_at_the_level_too_deep(
        cp: ControlPlane, file: str, text: str, where: tuple[int, int]) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    r = apply(c, file=file, text=text)
    assert r.status_code == 422, r.text
    [d] = diagnostics(r)
    assert (d["code"], d["file"], (d["line"], d["column"])) == ("MP0050", file, where)
    assert "more than 100 levels" in d["message"]
    assert_kept(c, before, rev)


def test_a_file_nested_exactly_100_levels_is_not_refused_for_depth(cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    r = apply(c, file="deep.yaml", text="kind: " + "[" * 99 + "]" * 99)
    assert r.status_code == 422, r.text
    assert "MP0050" not in [d["code"] for d in diagnostics(r)]  # refused, but for its kind


def test_deeply_nested_request_body_is_a_400_naming_the_position(cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    deep = b'{"sources": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path, method in ((f"{MP}/apply", "POST"), (f"{VS_PATH}/reviews", "PUT"),
                         (VS_PATH, "POST"), (f"{MP}/delete", "POST")):
        r = c.request(method, path, content=deep)
        assert r.status_code == 400, (path, r.text)
        body = r.json()
        assert body["kind"] == "Status" and body["reason"] == "BadRequest"
        assert "nested more than 100 levels deep at line 1, column 112" in body["message"]
        assert body["details"]["causes"][0]["reason"] == "MP0050"
    assert c.get("/healthz").json() == {"status": "ok"}
    assert_kept(c, before, rev)


# --- 2. half a surrogate pair ---------------------------------------------------------

def test_lone_surrogate_in_the_request_body_is_a_400_naming_the_position(
        cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    body = b'{"sources": [{"file": "x.yaml",\n  "text": "kind: \\ud800"}]}'
    r = c.post(f"{MP}/apply", content=body)
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "at line 2, column 18, \\ud800 is half of a UTF-16 surrogate pair" in message
    # the same for an object's body, and a low half alone; a whole pair is one character
    r = c.put(f"{VS_PATH}/reviews",
              content=b'{"metadata": {"name": "reviews", "labels": {"a": "\\udc00"}}}')
    assert r.status_code == 400, r.text
    assert "column 51, \\udc00 is half" in r.json()["message"]
    r = c.post(f"{MP}/apply", content=b'{"sources": [{"file": "\\ud83d\\ude00.yaml", '
                                       b'"text": "kind: x"}]}')
    assert r.status_code == 422, r.text
    assert diagnostics(r)[0]["file"] == "\U0001f600.yaml"
    # bytes that are not UTF-8 at all
    r = c.post(f"{MP}/apply", content=b'{"sources": "\xed\xa0\x80"}')
    assert r.status_code == 400, r.text
    assert "not UTF-8: byte 13 (0xed)" in r.json()["message"]
    assert_kept(c, before, rev)


def test_lone_surrogate_escaped_in_a_file_is_refused_at_its_line(cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    doc = yaml_text(vs("ratings")).replace("name: ratings", 'name: ratings\n  labels: '
                                           '{a: "x\\ud800"}')
    r = apply(c, file="ratings.yaml", text=doc)
    assert r.status_code == 422, r.text
    [d] = diagnostics(r)
    assert (d["code"], d["file"], d["line"], d["column"]) == ("MP0001", "ratings.yaml", 5, 15)
    assert "\\ud800, half of a UTF-16 surrogate pair" in d["message"]
    json_doc = '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "\\udfff"}}'
    r = apply(c, file="svc.json", text=json_doc)
    assert r.status_code == 422, r.text
    assert [(d["code"], d["line"]) for d in diagnostics(r)] == [("MP0001", 1)]
    assert_kept(c, before, rev)


# --- 3. alias bombs and the node budget -----------------------------------------------

def billion_laughs() -> str:
    """8 levels of 9 aliases each: 307 bytes whose last key stands for 9^8 (43 million)
    strings; PyYAML alone takes minutes and gigabytes to walk them."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines[:8]) + "\n"


def test_billion_laughs_is_refused_at_once_and_the_api_keeps_answering(
        cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    text = billion_laughs()
    assert len(text) < 413
    with health_polled(cp) as health:
        r = apply(c, file="lol.yaml", text=text)
        time.sleep(0.3)  # and the polls go on after the refusal
    assert r.status_code == 422, r.text
    [d] = diagnostics(r)
    assert (d["code"], d["file"], d["line"]) == ("MP0051", "lol.yaml", 6)
    assert "alias *e stands for" in d["message"]
    assert "more than 250,000 YAML/JSON nodes" in d["message"]
    assert health and all(status == 200 for status, _ in health), health
    # the budget is the apply's: the same bomb split over many files is refused too
    parts = [{"file": f"part{i}.yaml", "text": "\n".join(text.splitlines()[:5]) + "\n"}
             for i in range(60)]
    r = c.post(f"{MP}/apply", json={"sources": parts})
    assert r.status_code == 422, r.text
    assert "MP0051" in {d["code"] for d in diagnostics(r)}
    # a few anchors and aliases, as real manifests use them, are fine
    shared = ("labels: &labels {app: reviews, version: v1}\n"
              "selector: *labels\n")
    r = apply(c, file="anchors.yaml", text=shared)
    assert "MP0051" not in [d["code"] for d in diagnostics(r)]
    assert_kept(c, before, rev)


# --- 4. body size, and long applies off the event loop ---------------------------------

LIMIT = 200_000


def test_a_body_over_the_limit_is_a_413_before_it_is_read(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("small", args=["--no-mesh", "--max-body-bytes", str(LIMIT)])
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    big = yaml_text(vs("ratings")) + "#" * LIMIT
    r = apply(c, file="big.yaml", text=big)
    assert r.status_code == 413, r.text
    body = r.json()
    assert (body["kind"], body["reason"], body["code"]) == (
        "Status", "RequestEntityTooLarge", 413)
    assert f"larger than {LIMIT:,} bytes" in body["message"]
    assert "--max-body-bytes" in body["message"]
    assert body["details"]["causes"][0]["reason"] == "MP0052"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"sources": [{"file": "big.yaml", "text": "'
        for _ in range(LIMIT // 10_000 + 1):
            yield b"#" * 10_000
        yield b'"}]}'

    with cp.new_client() as fresh:
        r = fresh.post(f"{MP}/apply", content=chunks())
        assert r.status_code == 413, r.text
        assert r.json()["reason"] == "RequestEntityTooLarge"
    # just under the limit is read and applied
    r = apply(c, file="ok.yaml", text=yaml_text(vs("ratings")) + "#" * (LIMIT - 2_000))
    assert r.status_code == 200, r.text
    assert c.get(f"{VS_PATH}/ratings").status_code == 200
    assert c.get(f"{VS_PATH}/reviews").json() == before["vs"]
    assert revision(c) == rev + 1


def test_a_large_apply_is_validated_while_the_api_keeps_answering(cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before = seed(c)
    docs = [d for i in range(1_500) for d in (vs(f"app{i}"), service(f"app{i}"))]
    text = yaml_text(*docs)
    with health_polled(cp) as health:
        start = time.monotonic()
        r = apply(c, file="big.yaml", text=text)
        took = time.monotonic() - start
        answered_meanwhile = len(health)
    assert r.status_code == 200, r.text[:2000]
    assert len(r.json()["results"]) == 3_000
    # /healthz answered all along, several times while the apply was being validated
    assert all(status == 200 for status, _ in health), health
    assert answered_meanwhile >= 3, (answered_meanwhile, took)
    listed = c.get("/apis/networking.istio.io/v1/virtualservices").json()["items"]
    assert len(listed) == 1_501
    assert c.get(f"{VS_PATH}/reviews").json() == before["vs"]


# --- 5. DELETE preconditions ----------------------------------------------------------

def test_delete_with_a_stale_resource_version_is_a_409_and_keeps_the_object(
        cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    before = seed(c)
    stale = before["vs"]["metadata"]["resourceVersion"]
    r = apply(c, vs("reviews", timeout="5s"))  # someone else changes it meanwhile
    assert r.status_code == 200, r.text
    current = c.get(f"{VS_PATH}/reviews").json()
    rev = revision(c)
    path = f"{VS_PATH}/reviews"
    options = {"kind": "DeleteOptions", "apiVersion": "v1",
               "preconditions": {"resourceVersion": stale}}
    for r in (c.delete(f"{path}?resourceVersion={stale}"),
              c.request("DELETE", path, json=options),
              c.request("DELETE", path, json={"preconditions": {
                  "uid": "00000000-0000-0000-0000-000000000000"}})):
        assert r.status_code == 409, r.text
        [d] = diagnostics(r)
        assert d["code"] == "MP0020" and "nothing was deleted" in d["message"]
        assert d["object"] == "VirtualService default/reviews"
    # a precondition that cannot be read is refused, not ignored
    for r in (c.delete(f"{path}?resourceVersion=abc"),
              c.request("DELETE", path, json={"preconditions": {"resourceVersion": "x1"}}),
              c.request("DELETE", f"{path}?resourceVersion={stale}",
                        json={"preconditions": {"resourceVersion": "999"}}),
              c.request("DELETE", path, json={"kind": "Pod"})):
        assert r.status_code == 400, r.text
        assert diagnostics(r)[0]["code"] == "MP0017"
    assert c.get(path).json() == current
    assert revision(c) == rev
    # the current version and uid delete it
    now = {"preconditions": {"resourceVersion": current["metadata"]["resourceVersion"],
                             "uid": current["metadata"]["uid"]}}
    r = c.request("DELETE", path, json=now)
    assert r.status_code == 200, r.text
    assert c.get(path).status_code == 404
    assert c.get(f"{SVC_PATH}/reviews").json() == before["svc"]


# --- 6. the disk refuses the store's writes --------------------------------------------

def config_map(name: str, size: int) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"
            f"data: {{blob: {'x' * size}}}\n")


def test_a_store_write_the_disk_refuses_is_a_507_and_loses_nothing(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    """The control plane may not grow any file past 1 MB (RLIMIT_FSIZE): the OS refuses
    the store's write as a full disk would, and SQLite reports it."""
    cp = control_plane_factory("full", args=["--no-mesh"], file_size_limit=1_000_000)
    c = cp.client
    assert c is not None
    before = seed(c)
    accepted: list[str] = []
    refused = None
    for i in range(40):  # 100 KB each: the WAL passes 1 MB within a dozen
        r = apply(c, file=f"cm{i}.yaml", text=config_map(f"cm{i}", 100_000))
        if r.status_code != 200:
            refused = r
            break
        accepted.append(f"cm{i}")
    assert refused is not None and accepted, "the store never ran out of room"
    assert refused.status_code == 507, refused.text
    [d] = diagnostics(refused)
    assert d["code"] == "MP0053"
    assert "could not be written" in d["message"] and "disk I/O error" in d["message"]
    assert "nothing was written" in d["message"] and "Free space" in d["message"]
    rev = revision(c)
    assert c.get("/healthz").json() == {"status": "ok"}
    # a delete meets the same disk: refused the same way, the object kept
    r = c.delete(f"/api/v1/namespaces/default/configmaps/{accepted[0]}")
    assert r.status_code == 507, r.text
    assert revision(c) == rev
    # with room again, everything accepted before is there
    cp.terminate()
    cp.file_size_limit = None
    cp.start()
    c = cp.client
    assert c is not None
    names = [o["metadata"]["name"] for o in
             c.get("/api/v1/namespaces/default/configmaps").json()["items"]]
    assert names == sorted(accepted)
    assert c.get(f"{VS_PATH}/reviews").json() == before["vs"]
    assert revision(c) == rev


# --- 7. object names by kind ------------------------------------------------------------

BAD_NAMES = [
    # (kind, name, what the message must say)
    ("Service", "a" * 64, "it has 64 characters, more than 63"),
    ("Service", "2fast", "it starts with '2', not a letter"),
    ("Service", "my.svc", "'.' is not allowed"),
    ("VirtualService", "a..b", "it has an empty part between dots"),
    ("VirtualService", "a.-b", "a part starts or ends with '-'"),
    ("VirtualService", "Reviews", "'R' is not allowed"),
    ("VirtualService", "x" * 254, "it has 254 characters, more than 253"),
]


@pytest.mark.parametrize(("kind", "name", "why"), BAD_NAMES,
                         ids=[f"{k}-{n[:8]}" for k, n, _ in BAD_NAMES])
def test_an_object_name_its_kind_does_not_allow_is_refused_with_the_rule(
        cp: ControlPlane, kind: str, name: str, why: str) -> None:
    c = cp.client
    assert c is not None
    before, rev = seed(c), revision(c)
    doc = service(name) if kind == "Service" else vs("ratings")
    doc["metadata"]["name"] = name
    r = apply(c, doc, file="names.yaml")
    assert r.status_code == 422, r.text
    [d] = [d for d in diagnostics(r) if d["severity"] == "error"]
    assert (d["code"], d["path"], d["file"], d["line"]) == (
        "MP0017", "metadata.name", "names.yaml", 4)
    assert why in d["message"]
    if kind == "Service":
        assert "a DNS label (RFC 1035): at most 63 characters" in d["message"]
        assert "(for example 'reviews-v2')" in d["message"]
    else:
        assert "a DNS subdomain (RFC 1123): at most 253 characters" in d["message"]
        assert "(for example 'reviews-v2.canary')" in d["message"]
    assert_kept(c, before, rev)


def test_names_kubernetes_allows_are_accepted(cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    ok_vs = vs("ratings")
    ok_vs["metadata"]["name"] = "ratings.v2-canary"
    r = apply(c, ok_vs, service("s" * 63), service("a-1"))
    assert r.status_code == 200, r.text
    assert c.get(f"{SVC_PATH}/{'s' * 63}").status_code == 200
    assert c.get(f"{VS_PATH}/ratings.v2-canary").status_code == 200


# --- 8. a damaged database --------------------------------------------------------------

def test_up_refuses_a_damaged_database_naming_the_file_and_the_way_back(
        cp: ControlPlane) -> None:
    c = cp.client
    assert c is not None
    seed(c)
    r = apply(c, *[service(f"s{i}") for i in range(50)])
    assert r.status_code == 200, r.text
    assert cp.terminate() == 0
    database = cp.state_dir / "config.db"
    assert not (cp.state_dir / "config.db-wal").exists()  # checkpointed at close
    with database.open("r+b") as f:  # a torn write: the third page overwritten
        f.seek(2 * 4096)
        f.write(b"\x55" * 4096)
    proc = subprocess.run(
        [sys.executable, "-m", "meshpilot.server", "--state-dir", str(cp.state_dir),
         "--no-mesh"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode == 5, proc.stderr
    assert f"the config store {database} is damaged" in proc.stderr
    assert "quick_check" in proc.stderr or "malformed" in proc.stderr
    assert f"mv {database} {database}.damaged" in proc.stderr and ".recover" in proc.stderr
    assert not (cp.state_dir / "endpoints.json").exists()
    # not a database at all
    database.write_bytes(b"this is not SQLite" * 300)
    proc = subprocess.run(
        [sys.executable, "-m", "meshpilot.server", "--state-dir", str(cp.state_dir),
         "--no-mesh"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode == 5, proc.stderr
    assert "file is not a database" in proc.stderr


# --- 9. the API's --host does not carry the mesh's listeners along ----------------------

def accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_xds_and_metrics_stay_on_loopback_whatever_host_the_api_binds(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    """The API on another address (127.0.0.2 here, as 0.0.0.0 would be in use): xDS and
    the token-less metrics endpoint still listen on 127.0.0.1 only."""
    cp = control_plane_factory("apart", args=["--host", "127.0.0.2"])
    endpoints = read_endpoints(cp.state_dir)
    assert endpoints is not None
    assert urlsplit(endpoints["api"]).hostname == "127.0.0.2"
    xds_host, _, xds_port = endpoints["xds"].rpartition(":")
    metrics = urlsplit(endpoints["metrics"])
    assert (xds_host, metrics.hostname) == ("127.0.0.1", "127.0.0.1")
    assert metrics.port is not None
    for port in (int(xds_port), metrics.port):
        assert accepts("127.0.0.1", port)
        assert not accepts("127.0.0.2", port), port
    assert cp.client is not None and cp.client.get("/healthz").status_code == 200


def test_up_max_body_bytes_reaches_the_api_and_apply_says_why(tmp_path: Path) -> None:
    state_dir = tmp_path / "cli-state"
    try:
        up = run_cli("up", "--no-mesh", "--max-body-bytes", "50000", state_dir=state_dir)
        assert up.returncode == 0, up.stderr
        big = tmp_path / "big.yaml"
        big.write_text(yaml_text(vs("ratings")) + "#" * 60_000)
        result = run_cli("apply", "-f", str(big), state_dir=state_dir)
        assert result.returncode == 1
        assert "larger than 50,000 bytes" in result.stderr
        assert "(HTTP 413)" in result.stderr
        small = tmp_path / "small.yaml"
        small.write_text(yaml_text(vs("ratings")))
        assert run_cli("apply", "-f", str(small), state_dir=state_dir).returncode == 0
    finally:
        run_cli("down", state_dir=state_dir)
