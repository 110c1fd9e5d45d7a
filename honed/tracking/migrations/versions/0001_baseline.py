"""The ledger as it was before migrations: the runs table, its parent index, and the meta table whose
schema_version (1) the honed of that time checks. Ledgers written then are stamped with this revision."""

from alembic import op
import sqlalchemy as sa

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
    op.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    op.create_table(
        "runs",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("parent", sa.Text),
        sa.Column("change", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("data_fingerprint", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("greater_is_better", sa.Integer, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("updated", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("runs_parent", "runs", ["parent"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("meta")
