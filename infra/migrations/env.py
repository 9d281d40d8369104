"""Alembic environment: orderbus's metadata, the URL from the Config object."""

from __future__ import annotations

from alembic import context

from infra.database import make_engine
from infra.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "orderbus passes the database URL to Alembic"

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
