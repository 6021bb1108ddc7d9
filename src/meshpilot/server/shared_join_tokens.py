"""Join tokens the control-plane replicas on one etcd share: issued at one replica, a
token admits a join at any, and still only once.

The same rules as :class:`~meshpilot.security.join_tokens.JoinTokens` (only a SHA-256
of each token is kept, every held hash compared in constant time, bound to one group,
short-lived), with the hashes in the replicas' shared state instead of a file. Spending
is a transaction that succeeds only if the token's record is unchanged since it was
read, so two replicas given the same token at the same moment admit one join between
them. A record outlives its token's expiry by a minute (an etcd lease), so a late join
is told the token expired, and then the record goes by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from meshpilot.security.join_tokens import (
    DEFAULT_TTL,
    HeldToken,
    IssuedToken,
    JoinRefused,
    admitting,
    check_ttl,
    digest,
    new_token,
)
from meshpilot.store.etcd_client import b64
from meshpilot.store.shared import Record, SharedRecords

AREA = "join-tokens"
KEPT_AFTER_EXPIRY = 60


class SharedJoinTokens:
    """Issue, check and spend join tokens in the replicas' shared state."""

    def __init__(self, records: SharedRecords) -> None:
        self._records = records

    def issue(self, group: str, ttl: timedelta = DEFAULT_TTL,
              now: datetime | None = None) -> IssuedToken:
        check_ttl(ttl)
        expires = (now or datetime.now(UTC)) + ttl
        token = new_token()
        lease = self._records.client.lease_grant(int(ttl.total_seconds()) + KEPT_AFTER_EXPIRY)
        self._records.put(AREA, digest(token), {"group": group, "expiresAt":
                                                expires.isoformat(), "used": False}, lease)
        return IssuedToken(token, group, expires)

    def check(self, token: str, group: str, now: datetime | None = None) -> None:
        self._admitting(token, group, now or datetime.now(UTC))

    def spend(self, token: str, group: str, now: datetime | None = None) -> None:
        """Mark ``token`` used, if no replica did since it was read; JoinRefused (nothing
        spent) otherwise, or if it does not admit this join."""
        held, revision, lease = self._admitting(token, group, now or datetime.now(UTC))
        key = b64(self._records.key(AREA, held.digest))
        spent = {"group": held.group, "expiresAt": held.expires_at.isoformat(), "used": True}
        put = self._records.put_request(AREA, held.digest, spent, lease)
        answer = self._records.client.txn(
            [{"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}],
            [{"request_put": put}])
        if not answer.get("succeeded"):
            raise JoinRefused("the join token was already used; a token admits one join")

    def _admitting(self, token: str, group: str,
                   moment: datetime) -> tuple[HeldToken, int, int]:
        """The held token that admits this join, its record's revision and lease."""
        rows = self._records.items(AREA)
        held = [h for name, record in rows.items() if (h := _held(name, record)) is not None]
        match = admitting(held, token, group, moment)
        record = rows[match.digest]
        return match, record.revision, record.lease


def _held(name: str, record: Record) -> HeldToken | None:
    try:
        expires = datetime.fromisoformat(str(record.value.get("expiresAt")))
    except ValueError:
        return None  # not one of ours: it admits nothing
    return HeldToken(name, str(record.value.get("group")), expires,
                     record.value.get("used") is True)
