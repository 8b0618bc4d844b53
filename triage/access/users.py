"""Users, roles and API keys. Keys are random 256-bit tokens stored as SHA-256 hashes.

A fast hash is right here: the keys are high-entropy secrets, not passwords, so there is nothing to
brute-force, and every request looks its key up by hash.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.access.models import IssuedKey, KeyInfo, NewUser, User
from triage.access.policy import RESERVED_NAMES
from triage.access.rows import ApiKeyRow, UserRow
from triage.cases.rows import utcnow
from triage.cases.states import Role
from triage.database import Database
from triage.errors import AuthError, DuplicateError, InputError, NotFoundError, UnknownDepartmentError

KEY_PREFIX = "tk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _user(row: UserRow) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), departments=list(row.departments), active=row.active)


class UserDirectory:
    """Creates users, issues and revokes keys, and authenticates a key.

    Authentications are cached for `cache_s` seconds (the database lookup was a third of a queue
    request's cost). Revoking or deactivating through this directory clears the cache at once; another
    process notices within `cache_s`.
    """

    def __init__(self, db: Database, *, cache_s: float = 0.0) -> None:
        self._db = db
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, User]] = {}
        self._generation = 0  # bumped by every revocation, so a lookup that raced one is not cached

    def add(self, new: NewUser, *, valid_departments: Sequence[str]) -> IssuedKey:
        """Create a user and their first key."""
        if new.name.casefold() in RESERVED_NAMES:
            raise InputError(
                f"'{new.name}' is reserved for the system's own actions in the audit trail; choose another name",
                field="name",
            )
        if new.role is Role.CASEWORKER and not new.departments:
            raise InputError("a caseworker needs at least one department", field="departments")
        if new.role is not Role.CASEWORKER and new.departments:
            raise InputError(f"only caseworkers are scoped to departments, not {new.role.value}", field="departments")
        for name in new.departments:
            if name not in valid_departments:
                raise UnknownDepartmentError(name, valid_departments, field="departments")
        try:
            with self._db.write() as s:
                row = UserRow(name=new.name, role=new.role.value, departments=list(new.departments), active=True)
                s.add(row)
                s.flush()
                return self._issue(s, row)
        except DuplicateError as exc:
            raise InputError(f"a user named '{new.name}' already exists", field="name") from exc

    def issue_key(self, name: str) -> IssuedKey:
        """Another key for an existing user (rotation: issue, deploy, then revoke the old one)."""
        with self._db.write() as s:
            return self._issue(s, self._row(s, name))

    def revoke_keys(self, name: str, prefix: str | None = None) -> int:
        """Revoke one key (by prefix) or all keys of a user; returns how many were revoked."""
        with self._db.write() as s:
            row = self._row(s, name)
            keys = s.scalars(select(ApiKeyRow).where(ApiKeyRow.user_id == row.id, ApiKeyRow.revoked_at.is_(None)))
            n = 0
            for key in keys:
                if prefix is None or key.prefix == prefix:
                    key.revoked_at = utcnow()
                    n += 1
        self._forget()
        return n

    def set_active(self, name: str, active: bool) -> User:
        with self._db.write() as s:
            row = self._row(s, name)
            row.active = active
            user = _user(row)
        self._forget()
        return user

    def list(self) -> list[tuple[User, list[KeyInfo]]]:
        with self._db.read() as s:
            users = list(s.scalars(select(UserRow).order_by(UserRow.name)))
            keys = list(s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)))
        return [
            (
                _user(u),
                [
                    KeyInfo(id=k.id, prefix=k.prefix, created_at=k.created_at, revoked_at=k.revoked_at)
                    for k in keys
                    if k.user_id == u.id
                ],
            )
            for u in users
        ]

    def count(self) -> int:
        with self._db.read() as s:
            return int(s.scalar(select(func.count()).select_from(UserRow)) or 0)

    def cached(self, key: str | None) -> User | None:
        """The user of a key checked less than `cache_s` ago; None when it must be looked up."""
        if not key or not self._cache_s:
            return None
        hit = self._cache.get(hash_key(key))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def authenticate(self, key: str | None) -> User:
        """The active user holding this unrevoked key, else AuthError."""
        if not key:
            raise AuthError("an API key is required: send 'Authorization: Bearer <key>'")
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        generation = self._generation
        user = self._lookup(digest)
        if self._cache_s and generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self._cache_s, user)
        return user

    def _forget(self) -> None:
        self._generation += 1
        self._cache.clear()

    def _lookup(self, digest: str) -> User:
        with self._db.read() as s:
            row = s.execute(
                select(UserRow)
                .join(ApiKeyRow, ApiKeyRow.user_id == UserRow.id)
                .where(ApiKeyRow.key_hash == digest, ApiKeyRow.revoked_at.is_(None))
            ).scalar_one_or_none()
        if row is None or not row.active:
            raise AuthError("unknown, revoked or deactivated API key")
        return _user(row)

    @staticmethod
    def _row(s: Session, name: str) -> UserRow:
        row = s.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
        if row is None:
            raise NotFoundError(f"no user named '{name}'")
        return row

    @staticmethod
    def _issue(s: Session, row: UserRow) -> IssuedKey:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[:11]
        s.add(ApiKeyRow(user_id=row.id, key_hash=hash_key(key), prefix=prefix))
        s.flush()
        return IssuedKey(user=_user(row), key=key, prefix=prefix)
