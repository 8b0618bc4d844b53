"""Users as the rest of the system sees them, and what creating one or a key returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from triage.cases.states import Role


class User(BaseModel):
    """Someone (or some system) holding an API key."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    role: Role
    departments: list[str] = Field(default_factory=list)
    active: bool = True


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@\-\u4e00-\u9fff]+$")
    role: Role
    departments: list[str] = Field(default_factory=list)


class IssuedKey(BaseModel):
    """A new API key: `key` is shown this once and stored only as a hash."""

    user: User
    key: str
    prefix: str


class KeyInfo(BaseModel):
    id: int
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class UserKeys(BaseModel):
    user: User
    keys: list[KeyInfo]
