"""The public web front end: the app factory (``app``, which also mounts the console),
sign-up, confirm and unsubscribe (``public``), the archive and its feed (``archive``,
``issue_page``), the reader's preference page and counted links (``readers``), the
provider webhook route (``webhooks``), the page environment (``pages``) and what makes
it a site (``site``: error pages, favicon, ``/docs``). Shared HTTP plumbing is in
:mod:`digest.http`."""
