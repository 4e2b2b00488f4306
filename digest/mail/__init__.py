"""Getting mail into the inbox: DKIM signing and the DNS checks of ``digest doctor``."""
