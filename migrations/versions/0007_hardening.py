"""Hardening (issue 13): IDN domains stored in ASCII; webhook signature nonces.

Subscriber addresses whose domain was stored in Unicode (``a@münchen.de``) are
rewritten to the ASCII form the code now stores (``a@xn--mnchen-3ya.de``), so one
mailbox has one row; when both forms exist the Unicode row is left alone (and
reported in the log) rather than merged behind the operator's back. Suppression
hashes of the rewritten rows are added in the new form too.

Revision ID: 0007
Revises: 0011
"""

import hashlib
import logging
from collections.abc import Sequence

import idna
import sqlalchemy as sa
import sqlmodel
from alembic import op

import digest.core.clock

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)


def _hash(email: str) -> str:
    # Must equal subscribers.consent.email_hash (kept inline, as in 0002).
    return hashlib.sha256(b"weekly-verdict-digest:" + email.strip().lower().encode()).hexdigest()


def _ascii_form(email: str) -> str | None:
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return None
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}".lower()
    except idna.IDNAError:
        return None


def upgrade() -> None:
    op.create_table(
        "webhook_nonce",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("nonce", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("seen_at", digest.core.clock.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "nonce", name="uq_webhook_nonce_provider_nonce"),
    )
    with op.batch_alter_table("webhook_nonce", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_nonce_seen_at", ["seen_at"], unique=False)

    conn = op.get_bind()
    subscriber = sa.table("subscriber", sa.column("id"), sa.column("email"))
    suppression = sa.table(
        "suppression",
        sa.column("email_hash"),
        sa.column("reason"),
        sa.column("source"),
        sa.column("created_at"),
    )
    rows = conn.execute(sa.select(subscriber.c.id, subscriber.c.email)).all()
    known = {r.email for r in rows}
    for row in rows:
        target = _ascii_form(row.email)
        if target is None:
            continue
        if target in known:
            logger.warning("subscriber %s: %s exists too; left as is", row.id, target)
            continue
        conn.execute(sa.update(subscriber).where(subscriber.c.id == row.id).values(email=target))
        known.add(target)
        listed = conn.execute(
            sa.select(suppression).where(suppression.c.email_hash == _hash(row.email))
        ).first()
        if listed is not None:
            conn.execute(
                sa.insert(suppression).values(
                    email_hash=_hash(target),
                    reason=listed.reason,
                    source=listed.source,
                    created_at=listed.created_at,
                )
            )


def downgrade() -> None:
    with op.batch_alter_table("webhook_nonce", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_nonce_seen_at")
    op.drop_table("webhook_nonce")
