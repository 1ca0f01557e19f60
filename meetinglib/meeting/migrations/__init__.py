"""The meeting store's migrations (Alembic), applied by ``store.upgrade`` when a store opens.

``store.METADATA`` is the one definition of the schema; each revision in ``versions/``
is the step from the schema before it to the one after, written once (generated with
``alembic revision --autogenerate`` against ``METADATA``, then frozen: a revision never
imports the current tables, which move on). ``tests/test_store.py`` checks that
upgrading an empty database through every revision yields exactly ``METADATA``.
"""
