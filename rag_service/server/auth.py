"""Who is calling: the API key of a request becomes a ``Principal`` (``guard`` asks before any route runs).

- A key from RAG_API_KEY / RAG_API_KEYS_FILE is the operator: an admin, without limits (automation, bootstrap).
- A key made by ``rag keys create`` / ``POST /v1/keys`` is its user's, while the key is not revoked or expired and
  the user is not disabled: its row is read at every request, so a revocation made by any replica or by the CLI
  holds from the next request on. Its argon2 hash is verified once per process; later requests compare a SHA-256 of
  the key with the one verified (a dictionary lookup, instead of ~26 ms of argon2 each time).
- A server with no key anywhere (neither in its settings nor ever created in the database) is open: every request
  is the operator's, as before teams existed. Once a key exists, every /v1 request needs one.

The scheme is also declared for OpenAPI (``bearer_scheme``), so clients and /docs know to send it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from fastapi.security import HTTPBearer

from rag_service.admin.access import OPERATOR, Principal
from rag_service.admin.people import expired, key_id_of, verify_key
from rag_service.server.problems import UnauthorizedError
from rag_service.storage.people import PeopleStore

bearer_scheme = HTTPBearer(auto_error=False, description="an API key: from `rag keys create` (a user's), or from "
                           "RAG_API_KEY / RAG_API_KEYS_FILE (the operator's)")
# Verified keys remembered per process (by SHA-256), and how often a key's last-used time is written.
VERIFIED_CACHE = 4096
LAST_USED_EVERY = timedelta(minutes=1)
# Wrong secrets for one key id a minute before that id's unverified attempts are refused without hashing: each
# argon2 verify costs ~26 ms of CPU, so guessing at a known id must not become a way to load the server. The key's
# owner is unaffected once their key was verified in this process (the cache is asked first).
MAX_FAILURES_PER_MINUTE = 10


def bearer(authorization: str | None) -> str:
    scheme, _, given = (authorization or "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def key_matches(keys: Iterable[str], token: str) -> bool:
    """``token`` against every key, each in constant time, so timing reveals neither a key nor which one matched."""
    return bool(sum(hmac.compare_digest(token.encode(), key.encode()) for key in keys))


class Authenticator:
    def __init__(self, env_keys: frozenset[str], people: Callable[[], PeopleStore]) -> None:
        self.env_keys = env_keys
        self._people = people
        self._keyed = bool(env_keys)  # once true, stays true: keys are revoked, never deleted
        self._verified: OrderedDict[bytes, str] = OrderedDict()  # sha256(key) -> key id
        self._failures: dict[str, tuple[float, int]] = {}  # key id -> (start of its minute, wrong secrets in it)
        self._lock = threading.Lock()

    def keyed(self) -> bool:
        """Whether /v1 needs a key: keys in the settings, or any key ever created in the database."""
        if not self._keyed and self._people().any_key():
            self._keyed = True
        return self._keyed

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller, or UnauthorizedError. Blocking (a database read, maybe an argon2 verify): run it in a thread."""
        token = bearer(authorization)
        if self.env_keys and key_matches(self.env_keys, token):
            return OPERATOR
        if not self.keyed():
            return OPERATOR
        key_id = key_id_of(token)
        record = self._people().key_record(key_id) if key_id is not None else None
        if record is None or not self._verify(token, record.key.id, record.hash):
            raise UnauthorizedError("missing or invalid API key: send 'Authorization: Bearer <key>'")
        now = datetime.now(UTC)
        if record.key.revoked is not None:
            raise UnauthorizedError(f"API key {record.key.prefix} was revoked")
        if expired(record.key, now):
            raise UnauthorizedError(f"API key {record.key.prefix} expired at {record.key.expires}")
        if record.user.disabled:
            raise UnauthorizedError(f"user '{record.user.name}' is disabled")
        last = record.key.last_used
        if last is None or now - datetime.fromisoformat(last) >= LAST_USED_EVERY:
            self._people().touch_key(record.key.id, now.isoformat(timespec="seconds"))
        return Principal(record.user.name, record.user.role, record.user.id, record.key.id)

    def _verify(self, token: str, key_id: str, hashed: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        with self._lock:
            known = self._verified.get(digest)
            if known is not None:
                self._verified.move_to_end(digest)
                return known == key_id
            start, failed = self._failures.get(key_id, (now, 0))
            if now - start < 60 and failed >= MAX_FAILURES_PER_MINUTE:
                return False
        if not verify_key(hashed, token):
            with self._lock:
                start, failed = self._failures.get(key_id, (now, 0))
                self._failures[key_id] = (start, failed + 1) if now - start < 60 else (now, 1)
                if len(self._failures) > VERIFIED_CACHE:
                    self._failures.clear()
            return False
        with self._lock:
            self._verified[digest] = key_id
            while len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        return True
