"""`workbench dashboards`: settings per page, host policy, busy port, the apps' folder."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from workbench.dashboards import (
    HOMES_ROOTS_ENV,
    SERVED_HOME_ENV,
    DashboardError,
    PageRefused,
    check_port_free,
    dashboards_dir,
    host_warning,
    is_loopback,
    list_apps,
    parse_query,
    settings_env,
    settings_from_query,
    voila_command,
)
from workbench.settings import WorkbenchSettings

pytestmark = pytest.mark.unit


def test_parse_query_keeps_known_keys_last_value_wins() -> None:
    assert parse_query("home=%2Fdata%2Fwb&pack=facenet&x=1&pack=dlib") == {
        "home": "/data/wb",
        "pack": "dlib",
    }
    assert parse_query("") == {} and parse_query(None) == {} and parse_query("?home=") == {}


def _serve(monkeypatch: pytest.MonkeyPatch, settings: WorkbenchSettings, *roots: Path) -> None:
    """The environment `workbench dashboards` gives its kernels."""
    for key, value in settings_env(settings, list(roots)).items():
        monkeypatch.setenv(key, value)


def test_query_string_picks_the_pack_and_a_served_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served = tmp_path / "env-home"
    _serve(monkeypatch, WorkbenchSettings(home=served, pack="local"), tmp_path / "root")
    other = tmp_path / "root" / "page-home"
    other.mkdir(parents=True)
    (other / "catalog.sqlite").write_bytes(b"")  # an existing workbench under the root
    monkeypatch.setenv("QUERY_STRING", f"home={other}&pack=dlib")
    s = settings_from_query()
    assert s.home == other and s.pack == "dlib"
    monkeypatch.setenv("QUERY_STRING", f"home={served}")
    assert settings_from_query().home == served.resolve()
    # Without a query string the environment `workbench dashboards` set rules.
    monkeypatch.setenv("QUERY_STRING", "")
    s = settings_from_query()
    assert s.home == served.resolve() and s.pack == "local"
    # Parameters left None (a Voila page) leave the query string's values alone.
    monkeypatch.setenv("QUERY_STRING", "pack=dlib")
    assert settings_from_query(None, home=None, pack=None).pack == "dlib"
    # A notebook's own parameters win over both (its author chose them, not a visitor).
    assert settings_from_query("pack=dlib", pack="facenet").pack == "facenet"
    assert settings_from_query(f"home={tmp_path}", home=str(other)).home == other


@pytest.mark.parametrize(
    "home",
    ["/etc", "../..", "{tmp}/root/../elsewhere", "{tmp}/root/not-a-workbench", "{tmp}/root"],
)
def test_a_page_cannot_open_or_create_another_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: str
) -> None:
    _serve(monkeypatch, WorkbenchSettings(home=tmp_path / "served"), tmp_path / "root")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "not-a-workbench").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(
        PageRefused, match=r"this page may open only the served workbench .*served.*is not allowed"
    ):
        settings_from_query(f"home={home.format(tmp=tmp_path)}")
    assert sorted(tmp_path.rglob("*")) == before  # nothing made


def test_a_page_cannot_choose_a_model_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _serve(monkeypatch, WorkbenchSettings(home=tmp_path / "served", pack="local"))
    with pytest.raises(PageRefused, match="pack='/tmp' is not a pack these dashboards serve"):
        settings_from_query("pack=/tmp")
    with pytest.raises(PageRefused, match="is not a pack these dashboards serve"):
        settings_from_query("pack=/etc/x.onnx%2Bmobilefacenet")
    assert settings_from_query("pack=mtcnn%2Bmobilefacenet").pack == "mtcnn+mobilefacenet"


def test_without_the_dashboards_a_page_names_no_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SERVED_HOME_ENV, raising=False)
    with pytest.raises(PageRefused, match="this page may open no workbench named in its address"):
        settings_from_query(f"home={tmp_path}")


def test_settings_env_marks_the_served_home_and_roots(tmp_path: Path) -> None:
    s = WorkbenchSettings(home=tmp_path, pack="local", detector="yunet")
    env = settings_env(s)
    assert env["WORKBENCH_HOME"] == env[SERVED_HOME_ENV] == str(tmp_path.resolve())
    assert env["WORKBENCH_DETECTOR"] == "yunet"
    # Kernels attach to the home's vector server themselves: no URI is handed down.
    assert "WORKBENCH_STORAGE__MILVUS_URI" not in env and HOMES_ROOTS_ENV not in env
    roots = settings_env(s, [tmp_path / "a", tmp_path / "b"])[HOMES_ROOTS_ENV]
    assert roots.split(os.pathsep) == [str(tmp_path / "a"), str(tmp_path / "b")]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_warning(host: str) -> None:
    assert is_loopback(host)
    assert host_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_other_hosts_are_warned_about_private_photos(host: str) -> None:
    text = host_warning(host)
    assert text is not None and host in text
    assert "every photo" in text and "SSH tunnel" in text and "README" in text


def test_busy_port_is_refused_in_words() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)


def test_command_refuses_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from workbench.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["--home", str(tmp_path), "dashboards", "--port", str(port), "--no-browser"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err
    assert "Traceback" not in err
    assert not (tmp_path / "vectors.db").exists()  # refused before any server started


def test_command_warns_about_a_public_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workbench.cli import main

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit):
            main(["--home", str(tmp_path), "dashboards", "--host", "0.0.0.0", "--port", str(port)])
    assert "WARNING: serving the dashboards on 0.0.0.0" in capsys.readouterr().err


def test_dashboards_folder_is_found_with_the_gallery() -> None:
    folder = dashboards_dir()
    assert folder.name == "dashboards" and (folder / "gallery.ipynb").is_file()
    assert "gallery" in list_apps(folder)


def test_dashboards_folder_override_and_its_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKBENCH_DASHBOARDS_DIR", str(tmp_path))
    with pytest.raises(DashboardError, match="WORKBENCH_DASHBOARDS_DIR"):
        dashboards_dir()
    (tmp_path / "mine.ipynb").write_text("{}")
    assert dashboards_dir() == tmp_path and list_apps(tmp_path) == ["mine"]


def test_voila_binds_the_host_and_never_hops_ports(tmp_path: Path) -> None:
    cmd = voila_command(tmp_path, "127.0.0.1", 8870, open_browser=False)
    assert "--Voila.ip=127.0.0.1" in cmd and "--Voila.port=8870" in cmd
    assert "--Voila.port_retries=0" in cmd and "--Voila.open_browser=False" in cmd
    assert "--VoilaConfiguration.show_tracebacks=False" in cmd


def test_gallery_notebook_is_thin_and_clean() -> None:
    nb = json.loads((dashboards_dir() / "gallery.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) <= 4
    assert "parameters" in code[0]["metadata"].get("tags", [])
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    source = "".join("".join(c["source"]) for c in code)
    assert "from workbench.widgets import Gallery" in source


def test_thumb_grid_reports_every_click() -> None:
    from workbench.widgets.common import ThumbGrid

    grid = ThumbGrid()
    clicked: list[int] = []
    grid.on_click(clicked.append)
    grid._on_msg(grid, {"event": "click", "id": 7}, [])
    grid._on_msg(grid, {"event": "click", "id": 7}, [])
    grid._on_msg(grid, {"event": "other"}, [])
    assert clicked == [7, 7]


def test_gallery_widget_filters_pages_and_detail(tmp_path: Path) -> None:
    """The widget's Python side over a tiny synthetic catalog (no models, no browser)."""
    import datetime as dt

    import numpy as np
    from sqlalchemy import insert

    from workbench.core import Workbench
    from workbench.imaging.decode import DecodedImage
    from workbench.imaging.thumbnails import ThumbnailCache
    from workbench.store.catalog import Catalog
    from workbench.store.models import Photo
    from workbench.widgets.gallery import Gallery

    settings = WorkbenchSettings(home=tmp_path / "wb", local={"models_dir": tmp_path / "none"})
    cache = ThumbnailCache(settings)
    rows = []
    for i in range(7):
        sha = f"{i:064x}"
        rgb = np.full((40, 60, 3), 30 * i, dtype=np.uint8)
        cache.put(sha, DecodedImage(rgb, "JPEG"))
        status = ["done", "no_faces", "error"][i % 3]
        rows.append(
            {
                "sha256": sha,
                "source": "vk:album/1" if i < 2 else "local",
                "origin": "vk" if i < 2 else "local",
                "uri": f"/photos/p{i}.jpg",
                "width": 60,
                "height": 40,
                "status": status,
                "error": "broken" if status == "error" else None,
                "n_faces": 1 if status == "done" else 0,
                "meta": {"date": (dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat()},
            }
        )
    catalog = Catalog(settings.catalog_url)
    with catalog.session() as s, s.begin():
        s.execute(insert(Photo), rows)
    catalog.close()

    with Workbench(settings) as wb:
        g = Gallery(wb, page_size=3)
        assert (g.total, g.pages, len(g.grid.items)) == (7, 3, 3)
        assert g.grid.ready == "gallery" and all(t["src"].startswith("data:") for t in g.grid.items)
        assert "people are not available" in g.banner.value or g.banner.value == ""
        g.next_button.click()
        assert g.page == 2 and g.grid.key.startswith("2/3/7/")
        g.status.value = "no_faces"
        assert g.page == 1 and sorted(t["caption"] for t in g.grid.items) == ["p1.jpg", "p4.jpg"]
        assert [t["badge"] for t in g.grid.items] == ["no faces", "no faces"]
        g.status.value = "all"
        g.origin.value = "vk"
        assert g.total == 2
        assert dict(g.status.options)["With faces (1)"] == "faces"  # counts follow the filter
        g.origin.value = "__any__"
        g.date_from.value = dt.date(2024, 1, 6)
        assert sorted(t["caption"] for t in g.grid.items) == ["p5.jpg", "p6.jpg"]
        g.open_detail(g.grid.items[0]["id"])
        assert g.detail.layout.display == "flex"
        assert 'data-testid="detail"' in g.detail.header.value
        assert 'data-testid="detail-image"' in g.detail.header.value
