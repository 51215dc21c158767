"""Alembic environment for parkcast's schema."""
