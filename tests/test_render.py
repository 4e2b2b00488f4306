"""Jinja + MJML rendering: content, escaping, size, subject, trimming, template errors."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from store_support import WEEK, dated, sample_items, write_json

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.editorial.preflight import PREHEADER_WARN_CHARS
from digest.exceptions import RenderError
from digest.issue.render import (
    GMAIL_CLIP_BYTES,
    comparison_link,
    compile_mjml,
    default_preheader,
    default_subject,
    render_issue,
    trim_quote,
)
from digest.issue.subject import SUBJECT_TARGET
from digest.issue.verdict import verdict
from digest.mail.message import IssueMessage
from digest.mail.placeholders import placeholder
from digest.store.importer import import_comparisons
from digest.store.models import Comparison, Review, Tool

SCRIPT = "<script>alert(1)</script>"


def _eight(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seven samples plus one whose tool is named like an XSS probe."""
    probe = copy.deepcopy(items[0])
    probe["slug"] = "script-probe"
    probe["title"] = f"{SCRIPT} vs Plain Tool"
    probe["tools"][0]["name"] = SCRIPT
    probe["tools"][0]["tagline"] = 'Tagline with "quotes" & <b>tags</b>'
    return [*items, probe]


def _stored(
    engine: Engine, settings: Settings, tmp_path: Path, items: list[dict[str, Any]]
) -> list[Comparison]:
    src = write_json(tmp_path / "render.json", dated(items, settings))
    import_comparisons(engine, [src])
    with Session(engine) as session:
        rows = session.exec(select(Comparison).order_by(col(Comparison.published_at).desc())).all()
        for c in rows:  # load relationships before the session closes
            for t in c.tools:
                _ = t.reviews
        return list(rows)


@pytest.fixture
def eight(engine: Engine, settings: Settings, tmp_path: Path) -> list[Comparison]:
    comparisons = _stored(engine, settings, tmp_path, _eight(sample_items()))
    assert len(comparisons) == 8
    return comparisons


def test_script_tool_name_is_escaped_in_html_and_raw_in_text(
    eight: list[Comparison], settings: Settings
) -> None:
    rendered = render_issue(week=WEEK, full=eight, links=[], settings=settings)
    assert "<script" not in rendered.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<b>tags</b>" not in rendered.html
    assert "&lt;b&gt;tags&lt;/b&gt;" in rendered.html
    assert SCRIPT in rendered.text  # plain text is not HTML: raw is right there


def test_eight_comparisons_stay_well_under_gmail_clip(
    eight: list[Comparison], settings: Settings
) -> None:
    everything_full = settings.model_copy(update={"full_cards": 8})
    rendered = render_issue(week=WEEK, full=eight, links=[], settings=everything_full)
    size = len(rendered.html.encode("utf-8"))
    assert size < GMAIL_CLIP_BYTES * 0.75, size
    assert rendered.warnings == []
    default = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=settings)
    assert len(default.html.encode("utf-8")) < size


def test_subject_names_the_pick_and_counts_the_verdicts(
    eight: list[Comparison], settings: Settings
) -> None:
    by_title = {c.title.split(" vs ")[0]: c for c in eight}
    quill, lumen = by_title["QuillCode 3"], by_title["Lumen Vision 2"]
    others = [c for c in eight if c not in (quill, lumen)]
    rendered = render_issue(
        week=WEEK, full=[quill, lumen, *others[:3]], links=others[3:], settings=settings
    )
    assert rendered.subject == "Ship QuillCode 3 over Ferrous Assist — plus 7 more verdicts"
    assert len(rendered.subject) <= SUBJECT_TARGET
    # The preheader adds the other picks and never says the lead matchup again.
    assert rendered.preheader.startswith("Also: PixelProbe over Lumen Vision 2, ")
    assert "QuillCode 3 over Ferrous Assist" not in rendered.preheader
    assert str(escape(rendered.preheader)) in rendered.html
    assert len(rendered.preheader) <= PREHEADER_WARN_CHARS
    one = render_issue(week=WEEK, full=[quill], links=[], settings=settings)
    assert one.subject == "Ship QuillCode 3 over Ferrous Assist"
    assert one.preheader == (
        "Why: stands up to rivals. Prices, readers' votes and the reviews inside."
    )
    assert default_subject([quill, lumen]) == (
        "Ship QuillCode 3 over Ferrous Assist — plus 1 more verdict"
    )


def _renamed(comparison: Comparison, a: str, b: str) -> Comparison:
    """A detached copy of ``comparison`` whose tools are called ``a`` and ``b``."""
    tools = [
        Tool(
            position=t.position,
            name=name,
            panel_ship_pct=t.panel_ship_pct,
            community_pct=t.community_pct,
            entry=t.entry,
            reviews=[
                Review(position=r.position, lens=r.lens, quote=r.quote, verdict=r.verdict)
                for r in t.reviews
            ],
        )
        for t, name in zip(comparison.tools, (a, b), strict=True)
    ]
    return Comparison(slug=f"{a}-{b}".lower(), title=f"{a} vs {b}", tools=tools)


def test_subject_within_60_characters_where_the_names_allow(
    eight: list[Comparison], settings: Settings
) -> None:
    quill = next(c for c in eight if c.title.startswith("QuillCode"))
    long_names = _renamed(quill, "Mistral Medium 3 Instruct", "Ferrous Assist Enterprise Edition")
    subject = default_subject([long_names, *eight[:6]])
    assert subject == "Ship Mistral Medium 3 Instruct — plus 6 more verdicts"
    assert len(subject) <= SUBJECT_TARGET
    huge = _renamed(quill, "A" * 70, "B")
    assert default_subject([huge, *eight[:2]]) == f"Ship {'A' * 70} (+2 more)"
    # A draw leads: both named, called a draw, nothing else implied.
    draw = _renamed(quill, "Left", "Right")
    draw.tools[1].panel_ship_pct = 100
    assert default_subject([draw, *eight[:6]]) == "Left or Right? A draw — plus 6 more verdicts"
    assert "Left or Right" not in default_preheader([draw, *eight[:6]])
    # Many matchups: the preheader stops at a length inboxes show and says how many more.
    many = default_preheader([quill, *eight, *eight])
    assert len(many) <= PREHEADER_WARN_CHARS and re.search(r", and \d+ more\.$", many)


def test_each_card_carries_every_part(eight: list[Comparison], settings: Settings) -> None:
    rendered = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=settings)
    html, text = rendered.html, rendered.text
    for comparison in eight[:5]:
        link = comparison_link(comparison, settings.site_url)
        assert html.count(f'href="{link}"') >= 2  # the heading and the call to action
        title = str(escape(comparison.title))
        assert f"Read the {title} comparison →" in html  # the CTA names the comparison
        assert f"Read the {comparison.title} comparison:\n{link}\n" in text
        for tool in comparison.tools:
            for part in (tool.tagline, tool.entry):
                if "<" not in part:
                    assert part in html and " ".join(part.split()) in " ".join(text.split())
            community = "no votes yet" if tool.community_pct is None else f"{tool.community_pct}%"
            assert f"Readers' vote: {community}" in text
            # The reviewers' share is said once, in words, in the card's sentence.
            assert f"{tool.panel_ship_pct}%" not in text
    for comparison in eight[5:]:  # the rest are links, not cards
        link = comparison_link(comparison, settings.site_url)
        assert f"{link}\n" in text and f"Read the {comparison.title}" not in text
        # Compact, nothing lost: the sentence, and each tool's price and readers' vote.
        a, b = comparison.tools
        assert verdict(comparison).line in " ".join(text.split())
        for tool in (a, b):
            votes = (
                "no reader votes yet"
                if tool.community_pct is None
                else f"readers' vote {tool.community_pct}%"
            )
            if "<" not in tool.name:
                assert f"{tool.name}: {tool.entry}, {votes}" in " ".join(text.split())
    assert "Also new this week" in html and "ALSO NEW THIS WEEK" in text
    assert "no votes yet" in html
    assert "Read the full comparison" not in html  # five identical links told nobody anything
    # Two tool cards share one table row (equal height); a media query stacks them.
    assert html.count('class="card"') == 2 * 5
    assert re.search(r"@media only screen and \(max-width:\s*479px\)", html)


def test_verdict_first_with_the_real_lens(eight: list[Comparison], settings: Settings) -> None:
    """QuillCode 3 ships on every lens, Ferrous Assist passes on competition only."""
    quill = next(c for c in eight if c.title.startswith("QuillCode"))
    rendered = render_issue(week=WEEK, full=[quill], links=[], settings=settings)
    verdict = (
        "Ship QuillCode 3 — all four reviewers would; three of four would ship Ferrous Assist."
    )
    assert verdict in rendered.html
    assert "WHERE THE REVIEWERS SPLIT: THE COMPETITION" in rendered.text
    assert "QuillCode 3 · would ship" in rendered.text
    assert "Ferrous Assist · would pass" in rendered.text
    # "Lens" is never shown; the reviewers' sides are explained once, in plain words.
    assert "lens" not in rendered.text.lower() and "lens" not in rendered.html.lower()
    assert rendered.html.count("Four reviewers judge every tool") == 1
    competition = {
        t.name: r.quote for t in quill.tools for r in t.reviews if r.lens == "competition"
    }
    for quote in competition.values():
        assert trim_quote(quote, settings.quote_max_chars) in " ".join(rendered.text.split())
    assert "Developer experience review" not in rendered.html
    # Verdict first: the heading, then the verdict, then the quotes and the cards.
    html = rendered.html
    card = html.index('id="c-')
    assert html.index(str(escape(quill.title)), card) < html.index(verdict, card)
    assert html.index(verdict, card) < html.index("would ship</b>") < html.index("would pass</b>")
    assert html.index("would pass</b>") < html.index('class="card"')


def test_headings_one_h1_and_one_per_comparison(
    eight: list[Comparison], settings: Settings
) -> None:
    rendered = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=settings)
    html = rendered.html
    assert html.count("<h1") == 1
    assert html.count("<h2") == 1 + 5 + 1  # the glance, one per card, "Also new this week"
    assert html.count("<h3") == 5 + 3  # each card's lens, each linked comparison


def test_preheader_only_in_the_hidden_preview(eight: list[Comparison], settings: Settings) -> None:
    rendered = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=settings)
    assert rendered.html.count(rendered.preheader) == 1
    preview = re.search(r'<div style="(display:none;[^"]*)">([^<]*)', rendered.html)
    assert preview is not None and preview.group(2).startswith(rendered.preheader)
    assert "color" not in preview.group(1)  # hidden text in white is a spam signal


def test_type_sizes(eight: list[Comparison], settings: Settings) -> None:
    """Main text 16 px or more; nothing visible below 13 px."""
    rendered = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=settings)
    body = rendered.html.split("<body", 1)[1]
    body = re.sub(r'<div style="display:none;[^"]*">[^<]*</div>', "", body)  # the preview
    sizes = [int(px) for px in re.findall(r"font-size:\s*(\d+)px", body)]
    visible = [px for px in sizes if px > 1]  # MJML's font-size:0 spacer cells hold no text
    assert min(visible) >= 13, sorted(set(visible))
    text_blocks = re.findall(r'<div style="font-family:[^"]*font-size:(\d+)px', body)
    assert text_blocks and all(int(px) >= 16 for px in text_blocks[1:-1]), text_blocks


def test_logo_with_alt_text(eight: list[Comparison], settings: Settings) -> None:
    plain = render_issue(week=WEEK, full=eight[:1], links=[], settings=settings)
    assert "<img" not in plain.html and f">{settings.list_name}</h1>" in plain.html
    branded = settings.model_copy(
        update={"logo_url": "https://cdn.example.com/logo.png", "logo_alt": "Verdicts & Co"}
    )
    html = render_issue(week=WEEK, full=eight[:1], links=[], settings=branded).html
    assert re.search(
        r'<h1[^>]*><img src="https://cdn.example.com/logo.png" alt="Verdicts &amp; Co"', html
    )
    with pytest.raises(ValueError, match="https"):
        Settings(logo_url="http://cdn.example.com/logo.png")


def test_text_part_wrapped_at_78_without_breaking_urls(
    eight: list[Comparison], settings: Settings
) -> None:
    long_base = settings.model_copy(update={"site_url": "https://verdicts.example.com/" + "x" * 90})
    rendered = render_issue(week=WEEK, full=eight[:5], links=eight[5:], settings=long_base)
    for line in rendered.text.splitlines():
        if len(line) > 78:
            assert line.startswith("https://") and " " not in line, line
    for comparison in eight:
        assert f"{comparison_link(comparison, long_base.site_url)}\n" in rendered.text


def test_footer_has_why_unsubscribe_address_and_browser_link(
    eight: list[Comparison], settings: Settings
) -> None:
    custom = settings.model_copy(update={"postal_address": "Verdicts Ltd, 9 Quay Road, Cork"})
    rendered = render_issue(week=WEEK, full=eight[:2], links=[], settings=custom)
    for body in (rendered.html, rendered.text):
        assert "You get this email because you subscribed" in body
        assert "Verdicts Ltd, 9 Quay Road, Cork" in body
        assert placeholder("unsubscribe_url") in body
        # The view-in-browser link is filled in at send time (it follows the base URL
        # then), never baked into the frozen HTML.
        assert placeholder("archive_url") in body and f"{settings.base_url}/archive" not in body
        assert placeholder("greeting") in body


def test_pull_quotes_are_trimmed_at_sentence_boundaries(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    items = sample_items()[:1]
    long_quote = " ".join(f"Sentence number {i} says something useful." for i in range(30))
    # The competition lens is where this sample's panel split: its quotes are shown.
    items[0]["tools"][0]["reviews"][1]["quote"] = long_quote
    [comparison] = _stored(engine, settings, tmp_path, items)
    rendered = render_issue(week=WEEK, full=[comparison], links=[], settings=settings)
    match = re.search(r"“(Sentence number 0[^”]*)”", rendered.html)
    assert match is not None
    shown = match.group(1)
    assert len(shown) <= settings.quote_max_chars
    assert shown.endswith("something useful.")
    assert long_quote.startswith(shown)


def test_trim_quote() -> None:
    text = "First sentence here. Second one is longer than that! Third? Fourth."
    assert trim_quote(text, 200) == text
    assert trim_quote(text, 40) == "First sentence here."
    assert trim_quote(text, 55) == "First sentence here. Second one is longer than that!"
    cut = trim_quote("A single sentence that goes on and on without stopping at all", 30)
    assert cut.endswith("…") and len(cut) <= 30 and " " not in cut[-2:]
    assert trim_quote("  Spaces   collapse\n here.  ", 100) == "Spaces collapse here."
    # An abbreviation-like "3.5" is not a sentence end (no space after the dot).
    assert (
        trim_quote("Version 3.5 is out. It is fast and small enough.", 25) == "Version 3.5 is out."
    )


def test_content_cannot_forge_a_per_recipient_placeholder(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    items = sample_items()[:1]
    items[0]["tools"][0]["tagline"] = f"sneaky {placeholder('unsubscribe_url')}"
    [comparison] = _stored(engine, settings, tmp_path, items)
    rendered = render_issue(week=WEEK, full=[comparison], links=[], settings=settings)
    # Exactly the template's own placeholder remains (footer), not the smuggled one.
    assert rendered.text.count(placeholder("unsubscribe_url")) == 1
    assert rendered.html.count(placeholder("unsubscribe_url")) == 1


def test_missing_template_raises_render_error_naming_it(
    eight: list[Comparison], settings: Settings
) -> None:
    with pytest.raises(RenderError) as info:
        render_issue(week=WEEK, full=eight[:1], links=[], settings=settings, template="email/nope")
    assert info.value.template == "email/nope.mjml"
    assert "email/nope.mjml" in str(info.value)


def test_broken_mjml_raises_render_error_naming_it() -> None:
    with pytest.raises(RenderError) as info:
        compile_mjml("<mjml><mj-body><mj-section><mj-column>", "email/broken.mjml")
    assert info.value.template == "email/broken.mjml"


def test_mj_include_cannot_leave_the_templates_folder() -> None:
    source = '<mjml><mj-head><mj-include path="../../pyproject.toml" /></mj-head><mj-body /></mjml>'
    with pytest.raises(RenderError):
        compile_mjml(source, "email/evil.mjml")


def test_an_issue_needs_a_comparison(settings: Settings) -> None:
    with pytest.raises(RenderError):
        render_issue(week=WEEK, full=[], links=[], settings=settings)


def test_view_in_browser_follows_the_base_url_at_send_time(
    eight: list[Comparison], settings: Settings
) -> None:
    rendered = render_issue(week=WEEK, number=12, full=eight[:2], links=[], settings=settings)
    moved = settings.model_copy(update={"base_url": "https://news.verdicts.example"})
    reader = Recipient(3, "ada@example.com", "Ada")
    for current in (settings, moved):
        message = IssueMessage(
            issue_id=1,
            week=WEEK,
            number=12,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            settings=current,
        )
        html, text = message.html_for(reader), message.text_for(reader)
        assert f'href="{current.base_url}/archive/12"' in html
        assert f"\n{current.base_url}/archive/12\n" in text
        assert "[[%" not in html and "[[%" not in text
        assert message.as_bytes(reader) == message.as_bytes_slow(reader)


def test_issues_frozen_with_the_old_greeting_still_greet(settings: Settings) -> None:
    """A draft frozen before the greeting became a whole line said "Hi [[%name%]],"."""
    old = IssueMessage(
        issue_id=1,
        week=WEEK,
        subject="s",
        html=f"<p>Hi {placeholder('name')},</p>",
        text=f"Hi {placeholder('name')},\n",
        settings=settings,
    )
    assert old.html_for(Recipient(1, "a@example.com", "Ada Lovelace")) == "<p>Hi Ada,</p>"
    assert old.text_for(Recipient(2, "b@example.com", "")) == "\n"
