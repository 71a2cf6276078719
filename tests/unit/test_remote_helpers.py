"""Pure parts of the remote sources: specs, sizes, back-off, redaction, token prompts."""

from __future__ import annotations

import logging

import pytest
from loguru import logger

from workbench.errors import SourceError
from workbench.redaction import MASK, redact, register_secret
from workbench.settings import WorkbenchSettings
from workbench.sources import open_source
from workbench.sources.http import RetryPolicy, TransientError, with_retries
from workbench.sources.tokens import ask_missing_tokens, token_needed
from workbench.sources.vk import _largest, _parse
from workbench.sources.yadisk import _disk_path, is_public

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("album/-1_2", ("album", -1, "2")),
        ("album/12_wall", ("album", 12, "wall")),
        ("https://vk.com/album-12_345", ("album", -12, "345")),
        ("user/5", ("user", 5, "")),
        ("id5", ("user", 5, "")),
        ("group/7", ("group", -7, "")),
        ("club9", ("group", -9, "")),
    ],
)
def test_vk_specs(spec: str, parsed: tuple[str, int, str]) -> None:
    assert _parse(spec) == parsed


@pytest.mark.parametrize("spec", ["", "album/x", "photos", "group/-1", "user/abc"])
def test_vk_bad_spec_says_what_is_allowed(spec: str) -> None:
    with pytest.raises(SourceError, match=r"vk:album/<owner_id>_<album_id>"):
        _parse(spec)


def test_vk_largest_size_by_area_then_letter() -> None:
    sizes = [
        {"type": "s", "url": "s", "width": 75, "height": 50},
        {"type": "w", "url": "w", "width": 2560, "height": 1700},
        {"type": "x", "url": "x", "width": 604, "height": 400},
    ]
    assert _largest(sizes)["url"] == "w"  # type: ignore[index]
    # Old photos report no dimensions: the size letter decides.
    old = [{"type": t, "url": t, "width": 0, "height": 0} for t in "sxmz"]
    assert _largest(old)["url"] == "z"  # type: ignore[index]
    assert _largest([]) is None


def test_yadisk_specs() -> None:
    assert is_public("https://disk.yandex.ru/d/AbC")
    assert is_public("https://yadi.sk/i/AbC")
    assert is_public("AbCdEf123")
    assert not is_public("/disk/Photos")
    assert not is_public("disk:/Photos")
    assert _disk_path("/disk/Photos/2024") == "disk:/Photos/2024"
    assert _disk_path("/Photos") == "disk:/Photos"
    assert _disk_path("disk:/x") == "disk:/x"
    assert _disk_path("/disk") == "disk:/"


def test_private_disk_without_token_is_refused_before_any_request(tmp_path: object) -> None:
    settings = WorkbenchSettings(home=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="WORKBENCH_YADISK_TOKEN"):
        open_source("yadisk:/disk/Photos", settings)


def test_token_needed() -> None:
    assert token_needed("vk:album/1_2") == "vk"
    assert token_needed("yadisk:/disk/Photos") == "yadisk"
    assert token_needed("yadisk:https://disk.yandex.ru/d/x") is None
    assert token_needed("photos/") is None


def test_ask_missing_tokens_sets_only_what_is_missing(tmp_path: object) -> None:
    settings = WorkbenchSettings(home=tmp_path, yadisk_token="already-there")  # type: ignore[arg-type]
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "vk-token-from-prompt"

    got = ask_missing_tokens(["vk:album/1_2", "vk:user/3", "yadisk:/disk/x", "a/"], settings, ask)
    assert got == ["vk"] and len(asked) == 1 and "WORKBENCH_VK_TOKEN" in asked[0]
    assert settings.vk_token is not None
    assert settings.vk_token.get_secret_value() == "vk-token-from-prompt"
    assert "vk-token-from-prompt" not in repr(settings)
    assert redact("x vk-token-from-prompt y") == f"x {MASK} y"


def test_ask_missing_tokens_without_a_terminal_sets_nothing(tmp_path: object) -> None:
    settings = WorkbenchSettings(home=tmp_path)  # type: ignore[arg-type]

    def no_stdin(prompt: str) -> str:
        raise NotImplementedError("raw_input was called, but this frontend does not support it")

    assert ask_missing_tokens(["vk:album/1_2"], settings, no_stdin) == []
    assert settings.vk_token is None


def test_redact_registered_secrets_and_credential_shapes() -> None:
    register_secret("s3cr3t-token-value")
    text = (
        "GET https://api.vk.ru/method/photos.get?access_token=abc123def&v=5.199 "
        "Authorization: OAuth y0_AgAAAABBBBCCCC, body {'access_token': 'zzz'} "
        "and s3cr3t-token-value"
    )
    out = redact(text)
    for leaked in ("abc123def", "y0_AgAAAABBBBCCCC", "zzz", "s3cr3t-token-value"):
        assert leaked not in out
    assert "v=5.199" in out  # ordinary parameters stay readable


def test_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    register_secret("another-secret-token")
    sink: list[str] = []
    handler = logger.add(sink.append, format="{message}")
    try:
        logger.warning("calling with another-secret-token")
        logging.getLogger("urllib3.connectionpool").warning(
            "retrying url /x?access_token=another-secret-token"
        )
    finally:
        logger.remove(handler)
    assert sink and "another-secret-token" not in sink[0] and MASK in sink[0]
    assert "another-secret-token" not in capsys.readouterr().err


def test_retries_back_off_then_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("workbench.sources.http.time.sleep", waits.append)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("HTTP 503")
        return "ok"

    assert with_retries(flaky, "thing", RetryPolicy(retries=5, backoff=1.0)) == "ok"
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.5 and 1.0 <= waits[1] <= 3.0

    def always() -> str:
        raise TransientError("HTTP 429", retry_after=7)

    waits.clear()
    with pytest.raises(SourceError, match=r"thing: gave up after 3 attempts \(HTTP 429\)"):
        with_retries(always, "thing", RetryPolicy(retries=2, backoff=1.0))
    assert waits == [7, 7]  # the server's Retry-After wins over back-off


def test_non_transient_errors_are_not_retried() -> None:
    calls = {"n": 0}

    def broken() -> None:
        calls["n"] += 1
        raise SourceError("album deleted")

    with pytest.raises(SourceError, match="album deleted"):
        with_retries(broken, "x", RetryPolicy(retries=5, backoff=0))
    assert calls["n"] == 1


def test_urls_lose_their_passwords_in_messages() -> None:
    from workbench.redaction import redact_url
    from workbench.store.schema import redacted

    assert redact_url("redis://:s3cret@queue:6379/0") == "redis://:***@queue:6379/0"
    assert (
        redacted("postgresql+psycopg://faces:s3cret@db:5432/faces")
        == "postgresql+psycopg://faces:***@db:5432/faces"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("sqlite:////tmp/wb/catalog.sqlite") == "sqlite:////tmp/wb/catalog.sqlite"
