"""Alembic migrations and the read-side SQL views of parkcast's database."""
