"""Alembic's entry point for the inference table's migrations.

heart.inference_table.migrate runs it with a connection that already holds the migration lock
(config.attributes["connection"]). Without one, it writes the SQL for a database administrator
instead (`alembic upgrade head --sql` with sqlalchemy.url set to the database's URL).
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
else:
    context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
