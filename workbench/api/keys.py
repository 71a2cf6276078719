"""API keys: made, listed and revoked by `workbench api-key`, checked on every request.

A key is ``wbk_`` and 43 random URL-safe characters (256 bits), shown once when it
is made. The catalog keeps only its SHA-256 (a key is random, so a fast hash is
as good as a slow one: there is nothing to guess from) and its first 12
characters, which lists show to tell keys apart. A revoked key stays listed,
with the time it was revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from workbench.errors import ConfigurationError, NotFoundError
from workbench.store.catalog import Catalog
from workbench.store.models import ApiKey, as_utc, utcnow

KEY_PREFIX = "wbk_"
SHOWN_CHARS = 12
"""Characters of a key that lists show (``wbk_`` and 8 more)."""
_USED_EVERY_S = 60.0
"""How often a key's ``last_used_at`` is written at most (not one write per request)."""


@dataclass(frozen=True)
class KeyInfo:
    """A key as lists show it: never the key itself."""

    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        def iso(t: dt.datetime | None) -> str | None:
            return as_utc(t).isoformat() if t is not None else None

        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
            "active": self.active,
        }


@dataclass(frozen=True)
class NewKey:
    """A key just made: ``key`` is shown this once and stored nowhere."""

    key: str
    info: KeyInfo


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    """The API keys of a catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._used: dict[int, float] = {}
        self._lock = threading.Lock()

    def create(self, name: str) -> NewKey:
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise ConfigurationError(
                "a key's name must be 1-200 printable characters (who or what uses it)"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(name=name, prefix=key[:SHOWN_CHARS], key_hash=hash_key(key))
        with self.catalog.session.begin() as s:
            s.add(row)
            s.flush()
            info = _info(row)
        return NewKey(key, info)

    def list(self) -> list[KeyInfo]:
        with self.catalog.session() as s:
            return [_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def revoke(self, ref: str) -> KeyInfo:
        """Revoke the key ``ref`` names: its id, or the prefix lists show."""
        with self.catalog.session.begin() as s:
            rows = list(s.scalars(select(ApiKey).order_by(ApiKey.id)))
            found = [r for r in rows if str(r.id) == ref.strip() or r.prefix == ref.strip()]
            if not found:
                raise NotFoundError(
                    f"no API key {ref!r}; `workbench api-key list` shows their ids and prefixes"
                )
            row = found[0]
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _info(row)

    def check(self, key: str) -> int | None:
        """The id of the active key ``key`` is, or None (unknown or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        # One indexed row by a Core query on every request (an ORM session costs ~1 ms
        # more); no cache, so a key revoked elsewhere is refused at the next request.
        with self.catalog.engine.connect() as conn:
            row = conn.execute(
                select(ApiKey.id, ApiKey.key_hash, ApiKey.revoked_at).where(
                    ApiKey.key_hash == digest
                )
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        # The lookup is by hash; compare again in constant time all the same.
        if not secrets.compare_digest(row.key_hash, digest):
            return None
        self._note_use(row.id)
        return row.id

    def _note_use(self, key_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._used.get(key_id, -_USED_EVERY_S) < _USED_EVERY_S:
                return
            self._used[key_id] = now
        try:
            with self.catalog.session.begin() as s:
                s.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
        except Exception:  # noqa: BLE001 - a read-only home still answers requests
            pass


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.prefix, row.created_at, row.last_used_at, row.revoked_at)


__all__ = ["KEY_PREFIX", "ApiKeys", "KeyInfo", "NewKey", "hash_key"]
