"""Batch scoring: transcript readers, `collectguard score`, `collectguard relabel` and its engines."""
