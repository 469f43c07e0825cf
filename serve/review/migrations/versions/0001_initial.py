"""Initial review store: reviews, call verdicts, stored calls.

Revision ID: 0001
Revises:
Create Date: 2025-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("listener", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("model_labels", sa.JSON(), nullable=True),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reviews_call_id", "reviews", ["call_id"])
    op.create_index("ix_reviews_reviewer", "reviews", ["reviewer"])
    op.create_table(
        "call_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("model_verdict", sa.String(32), nullable=True),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_verdicts_call_id", "call_verdicts", ["call_id"])
    op.create_table(
        "stored_calls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(300), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_stored_calls_call_id", "stored_calls", ["call_id"])


def downgrade() -> None:
    op.drop_table("stored_calls")
    op.drop_table("call_verdicts")
    op.drop_table("reviews")
