"""Query events and their group-committing sink."""
