"""Alembic entry point: runs migrations on the engine that parkcast hands over."""

from alembic import context
from sqlalchemy import create_engine

config = context.config
engine = config.attributes.get("connection_engine")
if engine is None:
    # Plain `alembic -c ... upgrade head` from a shell: read the URL from settings.
    from parkcast.settings import get_settings

    engine = create_engine(get_settings().database_url)

with engine.begin() as connection:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
