"""Query monitoring and extraction detection (DESIGN.md: monitor/)."""
