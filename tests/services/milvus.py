"""Session fixture `milvus_server`: a real Milvus 2.3.5 standalone server for the tests.

Started once per test session (the first test that asks for it waits ~10-20 s),
in a temporary directory, on ports picked free at that moment (proxy, etcd
client and peer, metrics and every component), so it never meets a user's
server on 19530 / 2379 / 9091. Stopped when the session ends. Each test keeps
to its own Milvus database (`milvus_db_name`), so tests share the server
without seeing each other's collections.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator

import pytest


def milvus_db_name(request: pytest.FixtureRequest) -> str:
    """A Milvus database name of its own for the requesting test."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"t{zlib.crc32(request.node.nodeid.encode()):08x}_{name}"


def drop_milvus_db(uri: str, db: str) -> None:
    """Drop a test's database and its collections (Milvus allows 64 databases)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, db_name=db)
    try:
        for name in client.list_collections():
            client.drop_collection(name)
    finally:
        client.close()
    admin = MilvusClient(uri)
    try:
        if db in admin.list_databases():
            admin.drop_database(db)
    finally:
        admin.close()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI (http://127.0.0.1:<port>) of a Milvus server this session started."""
    from workbench.errors import WorkbenchError
    from workbench.store.milvus_server import MilvusServer, random_ports

    data = tmp_path_factory.mktemp("milvus-server")
    server = None
    error = ""
    for _ in range(2):  # a port picked free may be taken before the server binds it
        port, ports = random_ports()
        server = MilvusServer(data, port=port, ports=ports)
        try:
            uri = server.start(timeout=180)
            break
        except WorkbenchError as e:
            error = str(e)
            server.stop(timeout=10)
    else:
        pytest.fail(
            f"milvus_server: cannot start a Milvus server (install the `server` extra: "
            f"pip install 'face-workbench[server]'): {error}",
            pytrace=False,
        )
    yield uri
    server.stop(timeout=10)  # its data is thrown away: no need for a long graceful stop
