"""The email as mail clients, validators and filters see it: the official MJML validator
(strict), Chromium in light and dark mode (contrast, equal-height cards), axe-core,
SpamAssassin and Gmail's clipping size."""

from __future__ import annotations

from typing import Any

import pytest
from email_support import (
    CONTRAST_JS,
    Chromium,
    axe_violations,
    chromium,  # noqa: F401  (fixture)
    comparisons,
    email_settings_in,
    issue,
    luminance,
    mjml_errors,
    spam_score,
)
from store_support import WEEK

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.issue.render import GMAIL_CLIP_BYTES, RenderedIssue, brand_context, mjml_source
from digest.mail.message import IssueMessage
from digest.notices.subscribers import ConfirmationMessage, link_email_context
from digest.notices.welcome import WelcomeMessage, when_line
from digest.store.engine import make_engine, migrate
from digest.store.models import Comparison

READER = Recipient(7, "ada@example.com", "Ada Lovelace")
BOXES = "els => els.map(e => e.getBoundingClientRect().toJSON())"


@pytest.fixture(scope="module")
def email_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return email_settings_in(tmp_path_factory.mktemp("email"))


@pytest.fixture(scope="module")
def fifteen(email_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[Comparison]:
    engine = make_engine(email_settings.database_url)
    migrate(engine)
    try:
        return comparisons(engine, email_settings, tmp_path_factory.mktemp("items"), 15)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def digest(fifteen: list[Comparison], email_settings: Settings) -> RenderedIssue:
    """The default shape: five full cards and the sample week's other two as links."""
    return issue(fifteen[:7], email_settings)


def _message(rendered: RenderedIssue, settings: Settings) -> IssueMessage:
    return IssueMessage(
        issue_id=1,
        week=WEEK,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        settings=settings,
    )


# ---------------------------------------------------------------- validator


def test_digest_mjml_passes_the_official_validator_in_strict_mode(
    digest: RenderedIssue, fifteen: list[Comparison], email_settings: Settings
) -> None:
    assert mjml_errors(digest.source) == []
    branded = email_settings.model_copy(update={"logo_url": "https://cdn.example.org/logo.png"})
    assert mjml_errors(issue(fifteen, branded).source) == []
    # The validator is real: an attribute MJML does not know is reported.
    broken = digest.source.replace("<mj-column>", '<mj-column bogus="1">', 1)
    assert any("bogus" in error for error in mjml_errors(broken))


def test_confirmation_mjml_passes_the_official_validator(email_settings: Settings) -> None:
    assert mjml_errors(mjml_source("email/confirm", link_email_context(email_settings))) == []


def _welcome(settings: Settings) -> WelcomeMessage:
    return WelcomeMessage(
        settings,
        READER,
        next_send=None,
        latest_url=f"{settings.base_url}/archive/12",
    )


def test_welcome_mjml_passes_the_official_validator(email_settings: Settings) -> None:
    context = {
        **brand_context(email_settings),
        "subject": "Welcome",
        "preheader": "What arrives",
        "greeting": "Hi Ada,",
        "when": when_line(email_settings, None),
        "preferences_url": "https://digest.example.org/preferences/T",
        "unsubscribe_url": "https://digest.example.org/unsubscribe/T",
        "latest_url": None,
        "archive_url": "https://digest.example.org/archive",
    }
    assert mjml_errors(mjml_source("email/welcome", context)) == []


# ---------------------------------------------------------------- chromium


@pytest.fixture(scope="module")
def reader_html(digest: RenderedIssue, email_settings: Settings) -> str:
    return _message(digest, email_settings).html_for(READER)


@pytest.fixture(scope="module")
def emails(reader_html: str, demo_html: str, email_settings: Settings) -> dict[str, str]:
    link = f"{email_settings.base_url}/confirm/" + "Q" * 50
    return {
        "digest": reader_html,
        "demo": demo_html,
        "welcome": _welcome(email_settings).html,
        "confirm": ConfirmationMessage(email_settings, READER, link).html,
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    ("email", "width"),
    [("digest", 375), ("digest", 600), ("demo", 375), ("confirm", 375), ("welcome", 375)],
)
def test_text_contrast_in_light_and_dark_mode(
    chromium: Chromium,  # noqa: F811
    emails: dict[str, str],
    email: str,
    scheme: str,
    width: int,
) -> None:
    found = chromium.run(emails[email], width, scheme, lambda page: page.evaluate(CONTRAST_JS))
    # The whole email was measured, not an empty page.
    assert len(found["runs"]) > {"confirm": 8, "welcome": 8, "demo": 60}.get(email, 100)
    low = [run for run in found["runs"] if run["ratio"] < 4.5]
    assert low == [], low[:10]
    page_luminance = luminance(found["page"])
    if scheme == "dark":
        assert page_luminance < 0.02, found["page"]  # a dark background, not inverted text
    else:
        assert page_luminance > 0.8, found["page"]


def test_tool_cards_are_equal_height_and_stack_on_phones(
    chromium: Chromium,  # noqa: F811
    reader_html: str,
) -> None:
    def cards(page: Any) -> Any:
        return page.eval_on_selector_all("td.card", BOXES)

    boxes = chromium.run(reader_html, 600, "light", cards)
    stacked = chromium.run(reader_html, 375, "light", cards)
    assert len(boxes) == 10
    for left, right in zip(boxes[::2], boxes[1::2], strict=True):
        assert left["top"] == right["top"] and left["height"] == right["height"]
        assert right["left"] >= left["right"] + 8  # a visible gap between the two cards
    for first, second in zip(stacked[::2], stacked[1::2], strict=True):
        assert second["top"] >= first["bottom"] + 8
        assert first["width"] == second["width"] and first["width"] > 300


#: The demo issue's height at 375 px before issue 26 (tests/email_heights.py at commit
#: 2405765): five full cards, no summary.
HEIGHT_BEFORE_375 = 6254
#: A phone's first screen: what shows before any scrolling.
FIRST_SCREEN = 700


@pytest.fixture(scope="module")
def demo_html(fifteen: list[Comparison], email_settings: Settings) -> str:
    """The demo issue as the defaults shape it: the seven samples, DIGEST_FULL_CARDS full."""
    samples = [c for c in fifteen if "(round" not in c.title]
    assert len(samples) == 7
    rendered = issue(samples, email_settings, email_settings.full_cards)
    return _message(rendered, email_settings).html_for(READER)


def test_the_week_at_a_glance_fills_a_phones_first_screen(
    chromium: Chromium,  # noqa: F811
    demo_html: str,
) -> None:
    def measure(page: Any) -> Any:
        return page.evaluate(
            """() => ({
              mast: document.querySelector('h1').getBoundingClientRect().toJSON(),
              lines: [...document.querySelectorAll('.glance p')].map(p => ({
                box: p.getBoundingClientRect().toJSON(),
                target: p.querySelector('a').getAttribute('href'),
                text: p.textContent,
              })),
              ids: [...document.querySelectorAll('[id^="c-"]')].map(e => e.id),
              height: document.documentElement.scrollHeight,
            })"""
        )

    found = chromium.run(demo_html, 375, "light", measure)
    lines = found["lines"]
    assert len(lines) == 7  # one per comparison
    assert found["mast"]["bottom"] < lines[0]["box"]["top"]  # right under the header
    assert lines[2]["box"]["bottom"] <= FIRST_SCREEN, lines[2]
    # Each line names the matchup and the pick, and jumps to that comparison's card.
    assert [line["target"] for line in lines] == [f"#{i}" for i in found["ids"]]
    assert all(" vs " in line["text"] and ": " in line["text"] for line in lines)
    assert lines[0]["text"].startswith("Brisé Voice vs Tonal Relay: Ship Brisé Voice — ")
    # Shorter without losing a comparison: a third off the height before issue 26.
    assert found["height"] <= HEIGHT_BEFORE_375 * 2 / 3, found["height"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("email", ["digest", "demo", "confirm", "welcome"])
def test_axe_finds_no_serious_or_critical_violation(
    chromium: Chromium,  # noqa: F811
    emails: dict[str, str],
    email: str,
    scheme: str,
) -> None:
    assert axe_violations(chromium, emails[email], 600, scheme) == []


# ---------------------------------------------------------------- spam filters


def test_spamassassin_scores_the_digest_below_one(
    digest: RenderedIssue, email_settings: Settings
) -> None:
    score, report = spam_score(_message(digest, email_settings).as_bytes(READER))
    assert score < 1.0, report
    assert "HTML_FONT_LOW_CONTRAST" not in report  # the preheader is not hidden white text


def test_spamassassin_scores_the_welcome_below_one(email_settings: Settings) -> None:
    score, report = spam_score(_welcome(email_settings).as_bytes(READER))
    assert score < 1.0, report


def test_spamassassin_scores_the_confirmation_below_one(email_settings: Settings) -> None:
    link = f"{email_settings.base_url}/confirm/" + "Q" * 50
    message = ConfirmationMessage(email_settings, READER, link)
    score, report = spam_score(message.as_bytes(READER))
    assert score < 1.0, report


# ---------------------------------------------------------------- size


def test_five_cards_and_ten_links_use_under_60_percent_of_gmails_clip(
    fifteen: list[Comparison], email_settings: Settings
) -> None:
    rendered = issue(fifteen, email_settings)
    html = _message(rendered, email_settings).html_for(READER)
    assert html.count('class="card"') == 10 and html.count("<h3") == 5 + 10
    assert len(html.encode("utf-8")) < GMAIL_CLIP_BYTES * 0.6, len(html.encode("utf-8"))
