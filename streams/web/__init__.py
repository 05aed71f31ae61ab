"""The support dashboard and its JSON API (ASGI)."""
