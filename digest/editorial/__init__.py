"""The editors' say before a send: ``review`` (approve, hold, release) and
``preflight`` (the report that refuses an unsafe real send and warns about the rest).
The scheduled decisions are in :mod:`digest.jobs.schedule`, the review notice in
:mod:`digest.notices.reviewers`, an issue's history in :mod:`digest.issue.history`."""
