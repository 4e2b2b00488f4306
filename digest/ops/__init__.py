"""Running the digest in production: health and readiness probes, Prometheus metrics,
structured logs, and backup/restore of the store. Each module serves one of these;
the web routers are registered in :mod:`digest.web.app`, the commands in
:mod:`digest.cli.store`."""
