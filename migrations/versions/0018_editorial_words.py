"""The editors' words: a note in Markdown, a take per comparison, per-variant words,
and whether the subject and preheader follow the comparisons (automatic).

Revision ID: 0018
Revises: 0017
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: on SQLite a batch re-creates the issue table, and
    # dropping the old one cascades to its history, comparisons and deliveries.
    op.add_column("issue", sa.Column("note", sa.Text(), nullable=False, server_default=""))
    for name in ("subject_auto", "preheader_auto"):
        op.add_column(
            "issue", sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.add_column(
        "issue", sa.Column("variant_words", sa.Text(), nullable=False, server_default="{}")
    )
    op.add_column(
        "issue_comparison",
        sa.Column("take", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    )
    # A draft whose subject (or preheader) an editor had already written keeps it as
    # theirs: its history has an edit that changed it.
    conn = op.get_bind()
    edits = conn.execute(
        sa.text(
            "SELECT e.issue_id, e.detail FROM issue_event e JOIN issue i ON i.id = e.issue_id "
            "WHERE i.state = 'draft' AND e.action = 'edited'"
        )
    ).all()
    for issue_id, detail in edits:
        try:
            changed = json.loads(detail or "{}")
        except ValueError:
            continue
        for name in ("subject", "preheader"):
            if isinstance(changed, dict) and name in changed:
                conn.execute(
                    sa.text(f"UPDATE issue SET {name}_auto = :f WHERE id = :i"),  # noqa: S608
                    {"f": False, "i": issue_id},
                )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), not batch mode: batch mode re-creates the table,
    # and on SQLite dropping the old issue table cascades to its history, comparisons and
    # deliveries.
    op.drop_column("issue_comparison", "take")
    for name in ("variant_words", "preheader_auto", "subject_auto", "note"):
        op.drop_column("issue", name)
