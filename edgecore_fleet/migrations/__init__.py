"""Alembic migrations of the fleet server's schema (``store.migrate`` runs them)."""
