"""A stand-in for a third-party app with squashed migrations (see ../README.md)."""
