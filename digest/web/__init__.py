"""The FastAPI app: public subscriber routes, the archive, the operator console."""
