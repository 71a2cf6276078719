"""The one registry pattern, and `open_pack`'s lookup of names and directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import ConfigurationError, UnknownNameError, WorkbenchError
from workbench.faces.registry import PACKS, open_pack
from workbench.registry import Registry
from workbench.settings import WorkbenchSettings

pytestmark = pytest.mark.unit


def test_register_get_names() -> None:
    reg: Registry[int] = Registry("widget")
    assert reg.register("b", 2) == 2

    @reg.register("a")
    def make_a() -> int:
        return 1

    assert reg.get("a") is make_a and reg.get("b") == 2
    assert reg.names() == ["a", "b"]
    assert list(reg) == ["a", "b"]
    assert "a" in reg and "c" not in reg
    assert make_a() == 1  # the decorator returns the function unchanged


def test_register_again_replaces() -> None:
    reg: Registry[str] = Registry("widget")
    reg.register("x", "first")
    reg.register("x", "second")
    assert reg.get("x") == "second" and reg.names() == ["x"]


def test_unknown_name_lists_what_exists() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("beta", 2)
    reg.register("alpha", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    err = info.value
    assert isinstance(err, KeyError)
    assert isinstance(err, ConfigurationError) and isinstance(err, WorkbenchError)
    assert str(err) == "unknown widget 'gamma'; available: alpha, beta"
    assert err.kind == "widget" and err.name == "gamma" and err.available == ["alpha", "beta"]
    assert err.__cause__ is None and err.__suppress_context__


def test_unknown_name_is_caught_as_key_error() -> None:
    reg: Registry[int] = Registry("widget")
    try:
        reg.get("x")
    except KeyError as e:
        assert "(none registered)" in str(e)
    else:  # pragma: no cover
        pytest.fail("no KeyError")


def test_empty_registry_says_so() -> None:
    expected = r"unknown thing 'x'; available: \(none registered\)"
    with pytest.raises(UnknownNameError, match=expected):
        Registry("thing").get("x")


@pytest.fixture
def settings(tmp_path: Path) -> WorkbenchSettings:
    return WorkbenchSettings(
        home=tmp_path / "wb", insightface_root=tmp_path / "if", allow_download=False
    )


def test_builtin_packs_are_registered() -> None:
    assert {"local", "buffalo_l", "buffalo_s", "dlib"} <= set(PACKS.names())


def test_open_unknown_pack_lists_the_packs(settings: WorkbenchSettings) -> None:
    with pytest.raises(UnknownNameError) as info:
        open_pack("nope", settings)
    message = str(info.value)
    assert "unknown model pack 'nope'" in message
    for name in ("local", "buffalo_l", "buffalo_s", "dlib"):
        assert name in message


@pytest.mark.parametrize("spec", ["./no-such-dir", "models/nope", "/definitely/not/here"])
def test_path_like_spec_that_is_not_a_dir(spec: str, settings: WorkbenchSettings) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_pack(spec, settings)
    assert not isinstance(info.value, UnknownNameError)
    message = str(info.value)
    assert spec in message and "not a directory" in message
    assert "buffalo_l" in message  # lists the named packs as the alternative


def test_path_like_spec_that_is_a_file(tmp_path: Path, settings: WorkbenchSettings) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not a directory")
    with pytest.raises(ConfigurationError, match="not a directory"):
        open_pack(str(f), settings)


def test_registered_name_wins_over_a_same_named_dir(
    tmp_path: Path, settings: WorkbenchSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder named like a pack in the working directory does not shadow the pack."""

    (tmp_path / "nope-dir").mkdir()
    monkeypatch.chdir(tmp_path)
    sentinel = object()
    monkeypatch.setitem(PACKS._items, "nope-dir", lambda s: sentinel)
    assert open_pack("nope-dir", settings) is sentinel
