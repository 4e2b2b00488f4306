"""Click counts that never say who clicked.

With ``DIGEST_CLICK_COUNTS`` on (the default), each link of an issue to a comparison is
stored once (:class:`~digest.store.models.IssueLink`: issue, comparison, kind, URL) and the
email links to ``/r/<token>``, where the token is the link row's id sealed with the
site's key (AES-SIV, purpose ``click``) — the same for every reader, so it cannot name
one. ``/r/<token>`` adds one to that link's count and redirects to the stored URL, and
only to it: an edited or forged token is refused, and no token can carry a URL (no
open redirect). Counts are per issue and comparison (:class:`~digest.store.models.ClickCount`);
no table links a click to a subscriber, and there is no open-tracking pixel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session
from sqlmodel import select as sqlmodel_select

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter, read_claims
from digest.exceptions import TokenError
from digest.mail.placeholders import BASE_URL, placeholder
from digest.store.models import ClickCount, Comparison, Issue, IssueLink

logger = logging.getLogger(__name__)

L = IssueLink.__table__  # type: ignore[attr-defined]
K = ClickCount.__table__  # type: ignore[attr-defined]


class Linker:
    """Gives an issue's comparison links their ``/r/<token>`` form while it renders."""

    def __init__(self, session: Session, settings: Settings, issue_id: int) -> None:
        self.session = session
        self.issue_id = issue_id
        self.tokens = TokenMinter(settings, "click")

    def __call__(self, comparison: Comparison, kind: str, url: str) -> Markup:
        link = self.session.exec(
            sqlmodel_select(IssueLink).where(
                IssueLink.issue_id == self.issue_id,
                IssueLink.comparison_id == comparison.id,
                IssueLink.kind == kind,
                IssueLink.url == url,
            )
        ).first()
        if link is None:
            link = IssueLink(
                issue_id=self.issue_id, comparison_id=comparison.id, kind=kind, url=url
            )
            self.session.add(link)
            self.session.flush()
        assert link.id is not None
        # Our own placeholder and a token of URL-safe characters: safe as markup.
        return Markup(f"{placeholder(BASE_URL)}/r/{self.tokens.make(link.id)}")  # noqa: S704


def linker(session: Session, settings: Settings, issue_id: int) -> Linker | None:
    return Linker(session, settings, issue_id) if settings.click_counts else None


@dataclass(frozen=True)
class Target:
    url: str
    issue_id: int
    comparison_id: int | None
    link_id: int = 0


def follow(conn: Connection, settings: Settings, token: str, *, count: bool = True) -> Target:
    """Where ``token`` leads, counting the click (one per call); TokenError if forged."""
    claims = read_claims(settings, "click", token)
    row = conn.execute(
        select(L.c.url, L.c.issue_id, L.c.comparison_id).where(L.c.id == claims.subscriber_id)
    ).first()
    if row is None:
        raise TokenError("this link is not valid")
    if count:
        now = utcnow()
        values: dict[str, Any] = {"link_id": claims.subscriber_id, "clicks": 1, "last_at": now}
        dialect = conn.dialect.name
        if dialect in ("sqlite", "postgresql"):
            ins = sqlite.insert(K) if dialect == "sqlite" else postgresql.insert(K)
            conn.execute(
                ins.values(**values).on_conflict_do_update(
                    index_elements=["link_id"],
                    set_={"clicks": K.c.clicks + 1, "last_at": now},
                )
            )
        elif (
            conn.execute(
                update(K)
                .where(K.c.link_id == claims.subscriber_id)
                .values(clicks=K.c.clicks + 1, last_at=now)
            ).rowcount
            == 0
        ):
            conn.execute(K.insert().values(**values))
    return Target(str(row.url), int(row.issue_id), row.comparison_id, claims.subscriber_id)


def clicks_by_comparison(conn: Connection, issue_id: int) -> list[dict[str, Any]]:
    """One issue's clicks per comparison (every kind of link together), most first."""
    C = Comparison.__table__  # type: ignore[attr-defined]
    rows = conn.execute(
        select(C.c.slug, C.c.title, func.coalesce(func.sum(K.c.clicks), 0))
        .select_from(L.join(C, C.c.id == L.c.comparison_id).outerjoin(K, K.c.link_id == L.c.id))
        .where(L.c.issue_id == issue_id)
        .group_by(C.c.slug, C.c.title)
        .order_by(func.coalesce(func.sum(K.c.clicks), 0).desc(), C.c.title)
    ).all()
    return [{"slug": r[0], "title": r[1], "clicks": int(r[2])} for r in rows]


def most_read(conn: Connection, last_issues: int = 8) -> list[dict[str, Any]]:
    """Which comparisons readers opened most over the last issues that went out."""
    I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
    C = Comparison.__table__  # type: ignore[attr-defined]
    recent = (
        select(I.c.id)
        .where(I.c.started_at.is_not(None))
        .order_by(I.c.number.desc())
        .limit(last_issues)
        .scalar_subquery()
    )
    rows = conn.execute(
        select(C.c.slug, C.c.title, func.sum(K.c.clicks))
        .select_from(L.join(K, K.c.link_id == L.c.id).join(C, C.c.id == L.c.comparison_id))
        .where(L.c.issue_id.in_(recent))
        .group_by(C.c.slug, C.c.title)
        .order_by(func.sum(K.c.clicks).desc(), C.c.title)
        .limit(10)
    ).all()
    return [{"slug": r[0], "title": r[1], "clicks": int(r[2])} for r in rows]
