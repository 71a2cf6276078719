"""The HTTP API's parts that need no server: keys, upload names, source specs, jobs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.unit
fastapi = pytest.importorskip("fastapi")  # the `api` extra; `make setup` installs it


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    from workbench.api.keys import ApiKeys
    from workbench.store.catalog import Catalog

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield ApiKeys(catalog)
    catalog.close()


def test_a_key_is_shown_once_stored_hashed_and_revocable(keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from workbench.api.keys import KEY_PREFIX, hash_key
    from workbench.errors import ConfigurationError, NotFoundError

    made = keys.create("  newsroom ")
    assert made.key.startswith(KEY_PREFIX) and len(made.key) > 40
    assert made.info.name == "newsroom" and made.info.prefix == made.key[:12]
    assert keys.check(made.key) is not None
    assert keys.check(made.key + "x") is None and keys.check("nope") is None
    other = keys.create("script")
    assert other.key != made.key
    listed = keys.list()
    assert [k.name for k in listed] == ["newsroom", "script"]
    assert all("key" not in k.to_dict() for k in listed)
    assert keys.revoke(made.info.prefix).revoked_at is not None
    assert keys.check(made.key) is None and keys.check(other.key) is not None
    assert keys.revoke(str(other.info.id)).active is False
    with pytest.raises(NotFoundError, match="api-key list"):
        keys.revoke("wbk_missing")
    for bad in ("", "   ", "a\x1b[2Jb", "x" * 201):
        with pytest.raises(ConfigurationError):
            keys.create(bad)
    stored = (tmp_path / "catalog.sqlite").read_bytes()
    wal = tmp_path / "catalog.sqlite-wal"
    stored += wal.read_bytes() if wal.exists() else b""
    assert made.key.encode() not in stored and hash_key(made.key).encode() in stored


def test_upload_names_are_safe_and_unique() -> None:
    from workbench.api.uploads import safe_name

    taken: set[str] = set()
    names = [
        safe_name(n, taken)
        for n in [
            "a.jpg",
            "A.JPG",
            "../../etc/passwd",
            "..",
            None,
            "dir\\x.png",
            "é é.jpg",
            "\x1b[2J.jpg",
        ]
    ]
    assert names == [
        "a.jpg",
        "A-2.JPG",
        "passwd",
        "upload",
        "upload-2",
        "x.png",
        "é_é.jpg",
        "_2J.jpg",
    ]
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_pixels_are_checked_from_the_header() -> None:
    from workbench.api.problems import ApiProblem
    from workbench.api.uploads import check_pixels

    buf = io.BytesIO()
    Image.new("RGB", (200, 100)).save(buf, "PNG")
    check_pixels("small.png", buf.getvalue(), 20_000)
    with pytest.raises(ApiProblem) as e:
        check_pixels("small.png", buf.getvalue(), 19_999)
    assert e.value.status == 413 and "small.png is 200×100" in e.value.detail
    check_pixels("junk", b"not an image", 1)  # the decoder names what cannot be read


@pytest.mark.parametrize(
    ("spec", "local"),
    [
        ("/photos", True),
        ("photos/a.zip", True),
        ("C:/photos", True),
        ("local:/photos", True),
        ("yadisk:https://disk.yandex.ru/d/KEY", False),
        ("vk:album/1_2", False),
        ("unknown:thing", True),
    ],
)
def test_local_specs_are_told_from_remote_ones(spec: str, local: bool) -> None:
    from workbench.sources import is_local_spec

    assert is_local_spec(spec) is local


def test_the_openapi_schema_documents_problems_and_keys() -> None:
    from workbench.api.app import create_app
    from workbench.settings import WorkbenchSettings

    doc = create_app(WorkbenchSettings()).openapi()
    assert set(doc["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path != "/healthz":
                assert "401" in codes, (method, path)
                assert op.get("security"), (method, path)
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert "application/problem+json" in answer["content"], (method, path, code)
    body = doc["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "IngestRequest" in doc["components"]["schemas"]
