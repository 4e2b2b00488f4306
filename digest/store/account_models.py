"""The console's people and their sessions."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from digest.core.clock import UTCDateTime, utcnow


class Role(StrEnum):
    """Editors edit, test and approve issues; operators also send, pause, resume,
    cancel and manage subscribers."""

    EDITOR = "editor"
    OPERATOR = "operator"


def _ts(nullable: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable)


class ConsoleUser(SQLModel, table=True):
    __tablename__ = "console_user"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    role: str = Field(max_length=20)
    #: argon2id hash; None until the person has set a password through their link
    password_hash: str | None = Field(default=None, max_length=200)
    #: SHA-256 of the one-time set-password token, and when it stops working
    setup_token_hash: str | None = Field(default=None, max_length=64, index=True)
    setup_expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    last_login_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())

    @property
    def can_send(self) -> bool:
        return self.role == Role.OPERATOR


class ConsoleSession(SQLModel, table=True):
    """A logged-in browser. The cookie holds a random token; only its SHA-256 is stored,
    so a copy of the database logs nobody in."""

    __tablename__ = "console_session"

    id: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="console_user.id", index=True, ondelete="CASCADE")
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
