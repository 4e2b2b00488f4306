"""The weekly verdict digest: store → select → render → deliver."""

__version__ = "0.1.0"
