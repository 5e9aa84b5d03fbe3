"""Gates and shapers, one per module; pipeline.py composes them from the policy."""
