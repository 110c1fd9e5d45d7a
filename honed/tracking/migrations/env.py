"""Alembic's entry point for the ledger's migrations: always run by honed.tracking.ledger_db on the connection
(and inside the transaction) it passes, never from an alembic.ini."""

from alembic import context

config = context.config
context.configure(connection=config.attributes["connection"], version_table=config.attributes["version_table"],
                  render_as_batch=True)  # SQLite alters tables by copying them; batch mode does that
with context.begin_transaction():  # a no-op inside the caller's transaction, which commits or rolls back all
    context.run_migrations()
