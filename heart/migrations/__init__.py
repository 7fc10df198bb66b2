"""The inference table's Alembic migrations (heart.inference_table.migrate applies them; env.py is Alembic's entry)."""
