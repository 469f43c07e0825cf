"""Alembic migrations of the review store (applied by :func:`serve.review.store.ReviewStore.open`)."""
