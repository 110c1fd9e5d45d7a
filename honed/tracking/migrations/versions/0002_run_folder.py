"""Each row says where its run folder is, as an absolute path, so a machine sharing the ledger can tell a
folder it cannot see from a run that has none. Rows already there get their workspace's path when the ledger
is SQLite (the workspace is the folder holding the file); a server-side ledger has no older rows to fill."""

from alembic import context, op
import sqlalchemy as sa

revision = "0002_run_folder"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("folder", sa.Text, nullable=False, server_default=""))
    workspace = context.config.attributes.get("workspace", "")
    if workspace and op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text("UPDATE runs SET folder = :root || path WHERE path != ''")
                   .bindparams(root=workspace.rstrip("/") + "/"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("folder")
