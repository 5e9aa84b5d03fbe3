"""Extraction attacks, one module each; see ``base`` for what they share."""
