"""Real servers the tests start on local ports: Milvus, PostgreSQL, Redis.

Each module holds one session-scoped fixture (imported by tests/conftest.py).
They fail, never skip, when the server cannot be started: `make system-deps`
and the project's extras install everything they need.
"""
