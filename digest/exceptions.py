"""The project's one error tree.

Every error the package raises on purpose derives from :class:`DigestError`, so the CLI,
the scheduler and the web app can catch one type and show its message::

    DigestError
    ├── ConfigError                 settings missing, malformed or unsafe
    ├── StoreError                  database unreachable, migration failed
    ├── ImportValidationError       an import file is wrong; nothing was written
    ├── RenderError                 a template failed (names the template)
    ├── SubscriberError             an address is invalid, suppressed or unknown
    │   ├── AddressError            an address cannot go into a header or an envelope
    │   └── TokenError              a signed link is forged, expired or for another purpose
    ├── IssueStateError             the issue is not in a state that allows the action
    ├── PreflightError              a real send refused: the preflight report has errors
    ├── AccountError                a console account or password is invalid or unknown
    ├── WebhookError                a provider webhook request was refused
    │   └── WebhookVerificationError    unsigned, forged, stale or not configured
    └── TransportError              the mail transport failed as a whole
        ├── TransientTransportError     worth retrying: 4xx, timeouts, dropped connections
        └── PermanentTransportError     retrying will not help
            └── TransportConfigError    bad credentials or sender: stop the whole send
                └── SendStopped         the same, mid-batch: carries the results so far

Per-recipient outcomes are *not* exceptions: transports return one
:class:`digest.transports.base.SendResult` per recipient.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base class of every error the digest raises on purpose."""


class ConfigError(DigestError):
    """A setting is missing, malformed or unsafe."""


class StoreError(DigestError):
    """The database could not be opened, migrated or written."""


class DatabaseUnavailable(StoreError):
    """The database stayed unreachable (or locked) past DIGEST_DB_OUTAGE_GRACE_SECONDS."""


class BackupError(StoreError):
    """A backup or restore could not be made (bad path, unsupported database)."""


class ImportValidationError(DigestError):
    """One or more import files are invalid; the store was left unchanged.

    ``problems`` lists one human-readable line per problem, each naming the file and
    the line or field.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ImportConflictError(DigestError):
    """An import would change a comparison that already went out in an issue (or the
    store moved on since its preview); nothing was written. ``problems``: one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class RenderError(DigestError):
    """A template failed to render or compile."""

    def __init__(self, template: str, reason: str) -> None:
        self.template = template
        super().__init__(f"template {template}: {reason}")


class SubscriberError(DigestError):
    """An address is invalid, suppressed or unknown."""


class AddressError(SubscriberError):
    """An address cannot be written into a header or an SMTP envelope (it holds an
    encoded word, a delimiter or a control character, or its domain has no IDNA form).
    At send time this fails that one recipient, never the batch."""


class TokenError(SubscriberError):
    """A signed token is forged, expired, reused or meant for another purpose."""


class IssueStateError(DigestError):
    """The issue is not in a state that allows the requested action."""


class AccountError(DigestError):
    """A console account cannot be added, found or given that password."""


class PreflightError(DigestError):
    """A real send was refused because the issue's preflight report has errors.

    ``report`` is the :class:`digest.editorial.preflight.PreflightReport`.
    """

    def __init__(self, label: str, report: object) -> None:
        self.report = report
        errors = getattr(report, "errors", [])
        lines = "\n".join(f"  {e.line()}" for e in errors)
        super().__init__(
            f"issue {label} did not pass preflight; nothing was sent:\n{lines}\n"
            "(`digest preflight` shows the whole report; DIGEST_ALLOW_UNSAFE_SEND=true lets a "
            "local test rig through)"
        )


class WebhookError(DigestError):
    """A provider webhook request was refused; ``status`` is the HTTP answer to give."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class WebhookVerificationError(WebhookError):
    """The request is not provably from the provider (401), or the webhook is not
    configured (403): nothing in it may change the store."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message, status)


class TransportError(DigestError):
    """The transport failed as a whole (not one recipient)."""


class TransientTransportError(TransportError):
    """A failure worth retrying later: 4xx replies, timeouts, dropped connections."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentTransportError(TransportError):
    """A failure that retrying will not fix."""


class TransportConfigError(PermanentTransportError):
    """Credentials or the sender were rejected: the whole send must stop."""


class SendStopped(TransportConfigError):
    """A batch stopped part-way on a fatal answer (login or sender refused).

    ``results`` holds the per-recipient results of the messages tried before it, so
    that what the server accepted is recorded and not sent again.
    """

    def __init__(self, message: str, results: list[object]) -> None:
        self.results = results
        super().__init__(message)
