"""An issue's intro is stored as written: an empty intro means none.

Until now an issue frozen without an intro stored "" and rendered a default one, so the
console's "empty for none" could not mean none. Issues stored with "" get the default
text they were rendered with; from here on "" renders no intro.

Revision ID: 0015
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The default intro as digest/issue/render.py wrote it when this migration was made
#: (copied, not imported: a migration must not change when the code does).
DEFAULT_INTRO = (
    "Here are this week's newest AI tool comparisons: who the panel would ship, "
    "what each costs to start, and the one line from each reviewer worth reading."
)


def upgrade() -> None:
    op.execute(
        sa.text("UPDATE issue SET intro = :intro WHERE intro = ''").bindparams(
            intro=DEFAULT_INTRO
        )
    )


def downgrade() -> None:
    op.execute(
        sa.text("UPDATE issue SET intro = '' WHERE intro = :intro").bindparams(
            intro=DEFAULT_INTRO
        )
    )
