"""Store protocols and backends chosen by URI (see registry.py)."""
