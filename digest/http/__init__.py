"""HTTP plumbing the public web and the console share, so neither imports the other:
``middleware`` (security headers, HEAD as GET), ``bodies`` (every request body's size
limit and deadline, as it arrives), ``throttle`` (request throttling per client),
``client`` (who is asking) and ``accesslog`` (uvicorn's access log without tokens)."""
