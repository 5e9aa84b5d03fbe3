"""Evaluation: what the protection costs legitimate users, and what it denies attackers."""
