"""The editors' words: a note in Markdown, a take per comparison, per-variant words,
and whether the subject and preheader follow the comparisons (automatic).

Revision ID: 0017
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _automatic(lead: str, count: int) -> str:
    # The automatic subject as it was when these drafts were frozen.
    return lead if count == 1 else f"{lead} and {count - 1} more"


def upgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("subject_auto", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(
            sa.Column("preheader_auto", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch.add_column(sa.Column("variant_words", sa.Text(), nullable=False, server_default="{}"))
    with op.batch_alter_table("issue_comparison") as batch:
        batch.add_column(
            sa.Column("take", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
    # A draft whose subject an editor had already written keeps it as theirs.
    conn = op.get_bind()
    drafts = conn.execute(sa.text("SELECT id, subject FROM issue WHERE state = 'draft'")).all()
    for issue_id, subject in drafts:
        titles = (
            conn.execute(
                sa.text(
                    "SELECT c.title FROM issue_comparison ic JOIN comparison c "
                    "ON c.id = ic.comparison_id WHERE ic.issue_id = :i ORDER BY ic.position"
                ),
                {"i": issue_id},
            )
            .scalars()
            .all()
        )
        if titles and subject != _automatic(titles[0], len(titles)):
            conn.execute(
                sa.text("UPDATE issue SET subject_auto = :f WHERE id = :i"),
                {"f": False, "i": issue_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("issue_comparison") as batch:
        batch.drop_column("take")
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("variant_words")
        batch.drop_column("preheader_auto")
        batch.drop_column("subject_auto")
        batch.drop_column("note")
