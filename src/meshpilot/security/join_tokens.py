"""Join tokens: what lets a host outside the control plane's join one WorkloadGroup, once.

``meshpilot host token create --group NS/NAME`` issues a random token bound to that group
and valid for a short time; the host presents it with ``host join`` and it is spent the
moment a join succeeds, so a token copied from a shell history or a log later is worth
nothing. Only a SHA-256 hash of each token is kept (the file is 0600 in the state
directory, so a restart keeps unspent tokens), and a presented token is compared with
every held hash in constant time: neither the file nor the timing of a refusal gives a
token away. A token for group A never admits a join to group B.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from meshpilot.security.files import write_private

TOKENS_FILE = "join-tokens.json"
DEFAULT_TTL = timedelta(minutes=10)
MAX_TTL = timedelta(hours=24)
_TOKEN_BYTES = 32


class JoinRefused(ValueError):
    """A token that does not admit this join; the message says which rule it broke
    without saying whether another group's token was guessed."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    group: str  # NS/NAME
    expires_at: datetime


@dataclass
class HeldToken:
    digest: str
    group: str
    expires_at: datetime
    used: bool = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKEN_PREFIX = "mpjoin_"


class JoinTokenBook(Protocol):
    """Where join tokens are issued, checked and spent: :class:`JoinTokens` (one control
    plane), or one the replicas on an etcd share."""

    def issue(self, group: str, ttl: timedelta = DEFAULT_TTL,
              now: datetime | None = None) -> IssuedToken: ...

    def check(self, token: str, group: str, now: datetime | None = None) -> None: ...

    def spend(self, token: str, group: str, now: datetime | None = None) -> None: ...


def check_ttl(ttl: timedelta) -> None:
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"a join token lives more than 0s and at most {MAX_TTL}; "
                         f"asked for {ttl}")


def new_token() -> str:
    """A fresh token. Its prefix makes it one word on a command line (URL-safe base64 may
    begin with "-", which `host join --token` would read as an option) and says what it
    is."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def digest(token: str) -> str:
    """What is kept of a token: its SHA-256, never the token."""
    return _digest(token)


class JoinTokens:
    """Issue and spend join tokens (thread-safe); persisted hashed under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / TOKENS_FILE
        self._lock = threading.Lock()
        self._held: list[HeldToken] = self._load()

    def issue(self, group: str, ttl: timedelta = DEFAULT_TTL,
              now: datetime | None = None) -> IssuedToken:
        check_ttl(ttl)
        moment = now or datetime.now(UTC)
        token = new_token()
        with self._lock:
            self._held = [h for h in self._held if h.expires_at > moment]
            self._held.append(HeldToken(_digest(token), group, moment + ttl))
            self._save()
        return IssuedToken(token, group, moment + ttl)

    def check(self, token: str, group: str, now: datetime | None = None) -> None:
        """Raise :class:`JoinRefused` unless ``token`` would admit a join to ``group`` now
        (spends nothing: a join checks first, so a caller without a valid token costs the
        control plane no validation or signing, then spends)."""
        with self._lock:
            self._admitting(token, group, now or datetime.now(UTC))

    def spend(self, token: str, group: str, now: datetime | None = None) -> None:
        """Mark ``token`` used for a join to ``group``; raises :class:`JoinRefused`
        (nothing spent) if it is unknown, expired, used, or for another group."""
        with self._lock:
            self._admitting(token, group, now or datetime.now(UTC)).used = True
            self._save()

    def _admitting(self, token: str, group: str, moment: datetime) -> HeldToken:
        """The held token that admits this join (call under the lock)."""
        return admitting(self._held, token, group, moment)

    def _load(self) -> list[HeldToken]:
        try:
            rows = json.loads(self._path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [HeldToken(r["digest"], r["group"], datetime.fromisoformat(r["expiresAt"]),
                      bool(r.get("used"))) for r in rows]

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"digest": h.digest, "group": h.group, "expiresAt": h.expires_at.isoformat(),
                 "used": h.used} for h in self._held]
        write_private(self._path, json.dumps(rows).encode())


def admitting(tokens: Iterable[HeldToken], token: str, group: str,
              moment: datetime) -> HeldToken:
    """The one of ``tokens`` that admits a join to ``group`` with ``token`` at ``moment``;
    :class:`JoinRefused` naming the rule broken if none does."""
    wanted = _digest(token).encode()
    match = None
    for held in tokens:  # every hash compared: the time says nothing
        if hmac.compare_digest(held.digest.encode(), wanted):
            match = held
    if match is None:
        raise JoinRefused("the join token is not one this control plane issued")
    if match.used:
        raise JoinRefused("the join token was already used; a token admits one join")
    if match.expires_at <= moment:
        raise JoinRefused("the join token has expired; create a new one with "
                          "`meshpilot host token create`")
    if not hmac.compare_digest(match.group.encode(), group.encode()):
        raise JoinRefused(f"the join token was not issued for WorkloadGroup {group}")
    return match
