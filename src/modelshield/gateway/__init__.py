"""ASGI gateway: app factory, client and admin routes, problem+json, metrics."""
