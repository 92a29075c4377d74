"""Alembic environment: migrate the connection ``store.migrate`` hands over, or, from the
``alembic`` command line, the URL in ``sqlalchemy.url``."""

from alembic import context
from sqlalchemy import create_engine

from edgecore_fleet.schema import metadata


def run():
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
