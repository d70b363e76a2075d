"""The storage layer: every table, every SQL statement and the engine.

``core``: the engine lanes and ``Transaction`` (events after commit);
``models``, ``staff_models``, ``admin_models``: the tables; ``db``: engine
and migrations. Repositories per concern live beside them.
"""
