"""One issue, from the store to its frozen email: ``selection`` (which comparisons),
``verdict`` (what the review panel said: the line a card leads with), ``render``
(Jinja + MJML, compiled once), ``freeze`` (number and freeze the next issue, find one,
edit a draft), ``history`` (what happened to it, by whom) and ``clicks`` (its counted
links, written while it renders, followed by ``/r/<token>``)."""
