"""The relational store: SQLAlchemy models, Alembic migrations, bulk loading and the queries hybrec runs.

Entry points: :func:`hybrec.store.engine.get_engine` / :func:`~hybrec.store.engine.session_scope` for sessions,
:func:`hybrec.store.migrate.upgrade` for the schema, :func:`hybrec.store.bulk.load_source` for bulk loads (through
:func:`hybrec.ingest.ingest`), and the query modules :mod:`~hybrec.store.queries`,
:mod:`~hybrec.store.model_versions` and :mod:`~hybrec.store.chat_history`.
"""
