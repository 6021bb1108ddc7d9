"""How the query of a Graphite or InfluxDB MetricTemplate is read: one definition for the
provider that sends it (``delivery.providers``) and the rules that judge it at apply
(``validation``), so the two cannot disagree."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import parse_duration

_SPACE = re.compile(r"\s+")
_FLUX = re.compile(r'\|>|^\s*from\s*\(|^\s*import\s+"', re.MULTILINE)
# InfluxQL's literals and comments, which may hold any word or ';' without meaning it:
# strings ('...'), quoted identifiers ("..."), regexes (/.../ after =~ or !~), comments.
_LITERALS = re.compile(r"""
    '(?:[^'\\]|\\.)*'
  | "(?:[^"\\]|\\.)*"
  | (?<=~)\s*/(?:[^/\\]|\\.)*/
  | --[^\n]*
  | /\*.*?\*/
""", re.VERBOSE | re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GRAPHITE_SPAN = re.compile(r"^(\d+)(min|mins|minute|minutes|sec|secs|second|seconds)$")


def metric_interval_seconds(text: str) -> float:
    """A metric's ``interval`` in seconds: a Go duration (``1m``, ``30s``), or minutes
    or seconds as Graphite spells them (``1min``, ``30sec``), which Flagger's schema
    lets through and its graphite docs write. ValueError naming both when neither."""
    found = _GRAPHITE_SPAN.match(text.strip())
    if found:
        return int(found.group(1)) * (60.0 if found.group(2).startswith("min") else 1.0)
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"interval {text!r} does not parse; write a duration such as 30s, "
                         "1m or 5m (or Graphite's 1min)") from None


def _check_metric_interval(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError("mp_duration", "interval must be a string such as 30s or 1m")
    try:
        metric_interval_seconds(value)
    except ValueError as exc:
        raise PydanticCustomError("mp_duration", str(exc)) from None
    return value


MetricInterval = Annotated[str, BeforeValidator(_check_metric_interval)]
"""A metric's interval kept as written (it fills ``{{ interval }}``), checked to parse."""


def graphite_params(query: str) -> list[tuple[str, str]]:
    """A Graphite template's query as ``/render`` parameters, as Flagger reads it: runs
    of white space folded into one space (so a target may span lines), then the pairs
    decoded as a URL query string (``%xx``, ``+``)."""
    return parse_qsl(_SPACE.sub(" ", query), keep_blank_values=True)


def graphite_offset(seconds: float) -> str:
    """A window as Graphite spells a time offset, for a graphite template's
    ``{{ interval }}``: ``1min``, ``90s``. Graphite reads ``m`` as nothing (its minutes
    are ``min``), so the Go-style ``1m`` a Canary's interval is written in would make
    ``from=-{{ interval }}`` or ``summarize(..., '{{ interval }}')`` fail."""
    whole = max(1, round(seconds))
    return f"{whole // 60}min" if whole % 60 == 0 else f"{whole}s"


def is_http_url(address: str) -> bool:
    """An ``http://`` or ``https://`` URL with a host: where a provider can be asked."""
    try:
        parts = urlsplit(address)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def influxql_problem(query: str) -> str | None:
    """Why an influxdb template's query is not one read-only InfluxQL SELECT, or None.

    InfluxDB 1.x runs writes sent with GET too (``SELECT ... INTO``, ``DROP``, with only
    a deprecation warning), so a check's query must be judged here: one statement, a
    SELECT, without INTO. Literals and comments are set aside first, so a word or a
    ``;`` inside a string, a quoted name or a regex does not count."""
    if _FLUX.search(query):
        return "it is Flux"
    bare = _LITERALS.sub(" ", query)
    words = [w.lower() for w in _WORD.findall(bare)]
    if not words or words[0] != "select":
        return f"it starts with {words[0].upper() if words else 'nothing'}, not SELECT"
    if ";" in bare.rstrip().rstrip(";"):
        return "it holds more than one statement"
    if "into" in words:
        return "SELECT ... INTO writes"
    return None
