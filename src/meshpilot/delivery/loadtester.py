"""A built-in load tester with Flagger's tester API, so Canaries written for Flagger work.

``POST /`` with ``{"metadata": {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary:9898/"}}``
starts a ``hey``-style load in the background unless the same command is already running
(Flagger's behaviour; ``type: bash`` runs it to completion and answers with the result).
The generator is built in — there is no ``hey`` binary — and sends its requests through
the mesh proxy given at construction, so ``podinfo-canary`` resolves as in the mesh.
Other commands of the task types ``bash`` and ``cmd`` run on this host
(:mod:`meshpilot.delivery.shell_tasks`) when the tester was given a ``ShellTasks``, and
are refused (403, saying how to allow them) otherwise; given a ``token``, it runs them
only for requests bearing it (the control plane's own webhook calls). The types Flagger's tester has
and this one does not (``helm``, ``kubectl``, ...) are refused with 400, as Flagger's
refuses a type it does not know. A ``bash`` command ends before the caller gives up:
the control plane sends the hook's timeout as ``?timeout=10s``.
Manual gates: ``/gate/approve`` (always 200), ``/gate/halt`` (always 403), ``/gate/check``
driven by ``/gate/open`` and ``/gate/close``, ``/rollback/check`` driven by
``/rollback/open`` and ``/rollback/close``. Gates are keyed by the Canary's
``name.namespace`` from the request body, and are closed until opened.
"""

from __future__ import annotations

import hmac
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from meshpilot.api import flagger_tester as tester
from meshpilot.api.base import parse_duration
from meshpilot.delivery.shell_tasks import CommandRefused, ShellTasks

MAX_DURATION_S = 3600.0
MAX_CONCURRENCY = 200
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
"""What Flagger's tester reads as true in ``logCmdOutput`` and ``returnCmdOutput``."""


class CommandError(ValueError):
    """The command is not a hey command this tester can run."""


@dataclass(frozen=True)
class HeyCommand:
    url: str
    duration_s: float | None = None
    requests: int = 200
    qps: float = 0.0
    """Rate limit per worker, as hey's -q (0 = unlimited)."""
    concurrency: int = 50
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    timeout_s: float = 20.0


_FIELD_OPTIONS: Mapping[str, tuple[str, Callable[[str], Any]]] = MappingProxyType({
    "-z": ("duration_s", parse_duration),
    "-n": ("requests", int),
    "-q": ("qps", float),
    "-c": ("concurrency", int),
    "-m": ("method", str.upper),
    "-d": ("body", str),
    "-t": ("timeout_s", float),
})
"""hey options that set a HeyCommand field: (field, conversion of the value)."""


def _header_line(value: str) -> tuple[str, str]:
    name, _, val = value.partition(":")
    return name.strip(), val.strip()


_HEADER_OPTIONS: Mapping[str, Callable[[str], tuple[str, str]]] = MappingProxyType({
    "-H": _header_line,
    "-T": lambda value: ("Content-Type", value),
    "-host": lambda value: ("Host", value),
})
"""hey options that add a request header."""

_VALUE_OPTIONS = frozenset({*_FIELD_OPTIONS, *_HEADER_OPTIONS,
                            "-a", "-x", "-o", "-cpus", "-D", "-A"})
"""Every hey option that takes a value; those not above are accepted and ignored, so
that commands written for the real hey still run."""

_IGNORED_FLAGS = frozenset({"-h2", "-disable-compression", "-disable-keepalive",
                            "-disable-redirects"})


def parse_hey(cmd: str) -> HeyCommand:
    """Parse ``hey [flags] URL`` (-z -n -q -c -m -H -d -T -t -host; -h2 and tuning ignored)."""
    fields, headers, url = _hey_arguments(_hey_argv(cmd)[1:])
    if not url or not url.startswith(("http://", "https://")):
        raise CommandError("hey needs a URL starting with http:// or https://")
    concurrency = max(1, min(int(fields.pop("concurrency", 50)), MAX_CONCURRENCY))
    duration = fields.pop("duration_s", None)
    if duration is not None:
        duration = min(duration, MAX_DURATION_S)
    return HeyCommand(url=url, duration_s=duration, concurrency=concurrency,
                      headers=tuple(headers), **fields)


def _hey_argv(cmd: str) -> list[str]:
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise CommandError(f"cannot parse {cmd!r}: {exc}") from exc
    if not argv or argv[0].rsplit("/", 1)[-1] != "hey":
        raise CommandError(
            f"only hey commands are built in (got {argv[0] if argv else 'nothing'!r}); "
            "write e.g. hey -z 1m -q 10 -c 2 http://NAME-canary.NAMESPACE:PORT/"
        )
    return argv


def _hey_arguments(
    args: list[str],
) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
    """(HeyCommand fields, headers in command order, the last URL) of hey's arguments."""
    fields: dict[str, Any] = {}
    headers: list[tuple[str, str]] = []
    url: str | None = None
    rest = iter(args)
    for arg in rest:
        if arg in _IGNORED_FLAGS:
            continue
        if not arg.startswith("-"):
            url = arg
        elif arg in _VALUE_OPTIONS:
            value = next(rest, None)
            if value is None:
                raise CommandError(f"{arg} needs a value")
            _apply_option(arg, value, fields, headers)
        else:
            raise CommandError(f"unknown hey flag {arg}")
    return fields, headers, url


def _apply_option(option: str, value: str, fields: dict[str, Any],
                  headers: list[tuple[str, str]]) -> None:
    try:
        if option in _FIELD_OPTIONS:
            name, convert = _FIELD_OPTIONS[option]
            fields[name] = convert(value)
        elif option in _HEADER_OPTIONS:
            headers.append(_HEADER_OPTIONS[option](value))
    except ValueError as exc:
        raise CommandError(f"bad value {value!r} for {option}: {exc}") from exc


@dataclass
class LoadRun:
    """One running (or finished) load, with counts by status code."""

    command: HeyCommand
    started: float
    codes: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, code: int | None) -> None:
        with self._lock:
            if code is None:
                self.errors += 1
            else:
                self.codes[code] += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            total = sum(self.codes.values()) + self.errors
            return {
                "url": self.command.url,
                "requests": total,
                "codes": {str(k): v for k, v in sorted(self.codes.items())},
                "errors": self.errors,
                "running": self.finished is None,
            }

    @property
    def ok(self) -> bool:
        with self._lock:
            failed = self.errors + sum(v for k, v in self.codes.items() if k >= 500)
            return failed == 0 and sum(self.codes.values()) > 0


def run_load(run: LoadRun, client: httpx.Client) -> None:
    """Drive ``run`` to completion with ``concurrency`` workers (blocking)."""
    cmd = run.command
    deadline = run.started + (cmd.duration_s if cmd.duration_s is not None else MAX_DURATION_S)
    per_worker = None if cmd.duration_s is not None else max(1, cmd.requests // cmd.concurrency)
    headers = dict(cmd.headers)

    def worker() -> None:
        sent = 0
        while not run.stop.is_set() and time.time() < deadline:
            if per_worker is not None and sent >= per_worker:
                return
            began = time.monotonic()
            try:
                response = client.request(cmd.method, cmd.url, headers=headers,
                                          content=cmd.body, timeout=cmd.timeout_s)
                run.record(response.status_code)
            except httpx.HTTPError:
                run.record(None)
            sent += 1
            if cmd.qps > 0:
                pause = 1.0 / cmd.qps - (time.monotonic() - began)
                if pause > 0 and run.stop.wait(min(pause, max(0.0, deadline - time.time()))):
                    return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(cmd.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.finished = time.time()


def _bearer(request: Request, token: str | None) -> bool:
    """Whether ``request`` carries ``token`` as a bearer token (compared in constant
    time); every request does when there is no token to carry."""
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


class LoadTester:
    """The tester service: background loads keyed by command, and manual gates."""

    def __init__(self, proxy: str | None = None, client: httpx.Client | None = None,
                 shell: ShellTasks | None = None, token: str | None = None,
                 gate_token: str | None = None) -> None:
        """``token`` is what the controller's own calls carry (needed to run commands);
        ``gate_token`` (the API's token) is what opening or closing a gate or a rollback
        takes: any local process can reach this loopback port, and those switches
        approve promotions or force rollbacks."""
        self._client = client or httpx.Client(proxy=proxy, trust_env=False)
        self._shell = shell
        self._token = token
        self._gate_token = gate_token
        self._runs: dict[str, LoadRun] = {}
        self._gates: set[str] = set()
        self._rollbacks: set[str] = set()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/", self._run, methods=["POST"]),
            Route("/status", self._status, methods=["GET"]),
            Route("/gate/approve", self._approve, methods=["GET", "POST"]),
            Route("/gate/halt", self._halt, methods=["GET", "POST"]),
            Route("/gate/check", self._gate_check, methods=["POST"]),
            Route("/gate/open", self._gate_open, methods=["POST"]),
            Route("/gate/close", self._gate_close, methods=["POST"]),
            Route("/rollback/check", self._rollback_check, methods=["POST"]),
            Route("/rollback/open", self._rollback_open, methods=["POST"]),
            Route("/rollback/close", self._rollback_close, methods=["POST"]),
        ])

    # --- loads ----------------------------------------------------------------------

    def start(self, cmd: str) -> tuple[LoadRun, bool]:
        """Start ``cmd`` in the background; (run, False) when it was already running."""
        command = parse_hey(cmd)
        with self._lock:
            current = self._runs.get(cmd)
            if current is not None and current.finished is None:
                return current, False
            run = LoadRun(command, time.time())
            self._runs[cmd] = run
        threading.Thread(target=run_load, args=(run, self._client), daemon=True).start()
        return run, True

    def run_blocking(self, cmd: str) -> LoadRun:
        run = LoadRun(parse_hey(cmd), time.time())
        run_load(run, self._client)
        return run

    def stop_all(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop.set()
        if self._shell is not None:
            self._shell.stop_all()

    async def _run(self, request: Request) -> Response:
        body = await _json(request)
        metadata = body.get("metadata")
        if not isinstance(metadata, dict) or not metadata:
            return PlainTextResponse("metadata not found in payload", status_code=400)
        kind = str(tester.task_type(metadata))
        if kind not in tester.RUNS:
            return PlainTextResponse(_unknown_type(kind), status_code=400)
        cmd = metadata.get("cmd")
        if not isinstance(cmd, str) or not cmd.strip():
            return PlainTextResponse("metadata.cmd is required", status_code=400)
        if tester.is_builtin_command(cmd):
            return await self._hey(cmd, blocking=kind == tester.BASH)
        canary = f"{body.get('name')}.{body.get('namespace')}"
        try:
            return await self._command(request, canary, metadata, kind, cmd)
        except CommandRefused as exc:
            return PlainTextResponse(str(exc), status_code=503)

    async def _hey(self, cmd: str, *, blocking: bool) -> Response:
        try:
            if blocking:
                run = await run_in_threadpool(self.run_blocking, cmd)
                return JSONResponse(run.summary(), status_code=200 if run.ok else 400)
            run, started = self.start(cmd)
        except CommandError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        summary = run.summary()
        summary["started"] = started
        return JSONResponse(summary, status_code=200)

    async def _command(self, request: Request, canary: str, metadata: dict[str, Any],
                       kind: str, cmd: str) -> Response:
        """A shell command: ``cmd`` answered 202 at once, ``bash`` 200 or 500 when done."""
        shell = self._shell
        if shell is None:
            return PlainTextResponse(
                f"the built-in load tester runs hey only; it runs {cmd!r} on the control "
                f"plane's host only when that was started with `meshpilot up "
                f"{tester.ENABLE_FLAG}`", status_code=403)
        if not self._authorized(request):
            return PlainTextResponse("commands are run for the control plane's webhook "
                                     "calls only", status_code=401)
        log_output = str(metadata.get("logCmdOutput", "")) in _TRUE
        if kind == tester.CMD:
            started = shell.start(canary, cmd, log_output=log_output)
            return JSONResponse({"started": started}, status_code=202)
        timeout = _answer_within(request.query_params.get("timeout"), shell.limit_s)
        result = await run_in_threadpool(shell.run, canary, cmd, timeout,
                                         log_output=log_output)
        if not result.ok:
            return PlainTextResponse(result.failure(cmd), status_code=500)
        returned = str(metadata.get("returnCmdOutput", "")) in _TRUE
        return PlainTextResponse(result.output if returned else "", status_code=200)

    def _authorized(self, request: Request) -> bool:
        return _bearer(request, self._token)

    async def _status(self, request: Request) -> Response:
        with self._lock:
            runs = {cmd: run.summary() for cmd, run in self._runs.items()}
        commands = self._shell.status() if self._shell is not None else {}
        return JSONResponse({"runs": runs, "commands": commands,
                             "gates": sorted(self._gates),
                             "rollbacks": sorted(self._rollbacks)})

    # --- gates ----------------------------------------------------------------------

    async def _approve(self, request: Request) -> Response:
        return PlainTextResponse("Approved", status_code=200)

    async def _halt(self, request: Request) -> Response:
        return PlainTextResponse("Forbidden", status_code=403)

    async def _gate_check(self, request: Request) -> Response:
        return _check(await _canary_key(request), self._gates)

    async def _gate_open(self, request: Request) -> Response:
        return self._switch(request, await _canary_key(request), self._gates, True,
                            "Gate opened")

    async def _gate_close(self, request: Request) -> Response:
        return self._switch(request, await _canary_key(request), self._gates, False,
                            "Gate closed")

    async def _rollback_check(self, request: Request) -> Response:
        return _check(await _canary_key(request), self._rollbacks)

    async def _rollback_open(self, request: Request) -> Response:
        return self._switch(request, await _canary_key(request), self._rollbacks, True,
                            "Rollback opened")

    async def _rollback_close(self, request: Request) -> Response:
        return self._switch(request, await _canary_key(request), self._rollbacks, False,
                            "Rollback closed")

    def _switch(self, request: Request, key: str | None, where: set[str], on: bool,
                text: str) -> Response:
        if not _bearer(request, self._gate_token):
            return PlainTextResponse(
                "opening or closing a gate or a rollback takes the API's token: send "
                "Authorization: Bearer $(cat .meshpilot/token)", status_code=401)
        return self._toggle(key, where, on, text)

    def _toggle(self, key: str | None, where: set[str], on: bool, text: str) -> Response:
        if key is None:
            return PlainTextResponse("name and namespace are required", status_code=400)
        with self._lock:
            (where.add if on else where.discard)(key)
        return PlainTextResponse(f"{text} for {key}", status_code=202)


def _unknown_type(kind: str) -> str:
    if kind in tester.FLAGGER_ONLY:
        return (f"task type {kind} is Flagger's tester's; the built-in one runs cmd and bash "
                f"(run it as a bash command with `meshpilot up {tester.ENABLE_FLAG}`)")
    return f"unknown task type {kind}"


def _answer_within(timeout: str | None, limit_s: float) -> float:
    """How long a bash command may run so that the answer beats the caller's timeout:
    the hook's ``timeout`` less a margin (a tenth, at most a second), else ``limit_s``."""
    try:
        seconds = parse_duration(timeout) if timeout else limit_s
    except ValueError:
        seconds = limit_s
    return max(0.1, min(limit_s, seconds - min(1.0, seconds / 10)))


def _check(key: str | None, where: set[str]) -> Response:
    if key is None:
        return PlainTextResponse("name and namespace are required", status_code=400)
    if key in where:
        return PlainTextResponse("Approved", status_code=200)
    return PlainTextResponse("Forbidden", status_code=403)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def _canary_key(request: Request) -> str | None:
    body = await _json(request)
    name, namespace = body.get("name"), body.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return f"{name}.{namespace}"
