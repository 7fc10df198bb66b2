"""The predictions table: one row per served patient, the label joined later by prediction_id.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FEATURES = (
    "age",
    "gender",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.Uuid(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("predicted_class", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.Float()) for name in FEATURES),
        sa.Column("label", sa.SmallInteger()),
        sa.Column("labelled_at", sa.DateTime(timezone=True)),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "predictions_labelled",
        "predictions",
        ["prediction_id"],
        sqlite_where=sa.text("label IS NOT NULL"),
        postgresql_where=sa.text("label IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("predictions_labelled", table_name="predictions")
    op.drop_table("predictions")
