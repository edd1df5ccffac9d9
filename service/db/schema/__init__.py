"""The schema: ORM models, Alembic from code, migration helpers, drift checks."""
