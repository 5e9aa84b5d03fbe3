"""Accounts, API keys (HMAC digests, constant-time checks), secrets."""
