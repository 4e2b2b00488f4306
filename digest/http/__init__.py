"""HTTP plumbing the public web and the console share, so neither imports the other:
``middleware`` (security headers, form body limits, HEAD as GET), ``throttle``
(request throttling per client), ``client`` (who is asking) and ``accesslog``
(uvicorn's access log without tokens)."""
