"""What `Workbench.search`, `stats` and a person show in a notebook, on a real workbench
(real `local` pack, real thumbnails): tiles with capped thumbnails, no folder but a
photo's own uri, the plain reprs and JSON forms unchanged."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DevPhoto, local_pack_settings
from tests.unit.test_display import assert_capped, paths_in, well_formed

pytestmark = pytest.mark.integration

IDENTITIES = ("deepface:Angelina", "deepface:Mark")


@pytest.fixture(scope="module")
def display_wb(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, dev_photos: list[DevPhoto]
) -> Iterator[tuple[Any, Path, Path]]:
    """4 photos each of two people, ingested and clustered; and a sample of the first
    person that the workbench does not hold, in a folder of its own."""
    from workbench.core import Workbench

    root = tmp_path_factory.mktemp("display")
    photos, elsewhere = root / "photos", root / "elsewhere-private"
    photos.mkdir()
    elsewhere.mkdir()
    for identity in IDENTITIES:
        mine = [p for p in dev_photos if p.identity == identity and p.category == "identity"]
        for p in mine[:4]:
            shutil.copy(p.path, photos / p.path.name)
        if identity == IDENTITIES[0]:
            shutil.copy(mine[4].path, elsewhere / "sample.jpg")
    wb = Workbench(local_pack_settings(root / "wb", models_dir))
    wb.ingest([photos], progress=False)
    wb.cluster()
    yield wb, photos, elsewhere / "sample.jpg"
    wb.close()


def test_a_search_shows_the_sample_and_its_matches_as_capped_thumbnails(
    display_wb: tuple[Any, Path, Path],
) -> None:
    wb, photos, sample = display_wb
    result = wb.search(sample, top_k=5)
    assert len(result) == 1 and len(result[0].matches) >= 3, result
    plain = [f.to_dict() for f in result]
    assert json.loads(json.dumps(plain)) == plain  # what --json prints, unchanged
    assert repr(result) == repr(list(result))

    html = result._repr_html_()
    assert html is not None
    well_formed(html)
    assert 'data-wb-repr="search"' in html and "sample.jpg: 1 face" in html
    tiles = html.count('data-testid="repr-match"')
    assert tiles == len(result[0].matches)
    # The archive searched and the strangers to expect in it, as the CLI and the app say.
    assert 'data-testid="repr-expected"' in html
    assert f"{result[0].gallery:,} faces searched" in html
    images = assert_capped(html)
    assert len(images) == 1 + 1 + tiles  # the boxed sample, its face, every match
    uris = {m.photo for m in result[0].matches}
    assert uris and all(Path(u).parent == photos for u in uris)
    assert paths_in(html) <= uris  # a photo's own uri, nothing else
    for secret in (str(sample.parent), str(wb.home), str(wb.home.resolve()), "thumbnails"):
        assert secret not in html


def test_stats_and_a_person_draw_themselves(display_wb: tuple[Any, Path, Path]) -> None:
    wb, photos, _ = display_wb
    stats = wb.stats()
    html = stats._repr_html_()
    assert html is not None
    well_formed(html)
    assert 'data-source="local"' in html and f'data-photos="{stats.photos}"' in html
    assert 'data-agree="true"' in html

    people = wb.people.list()
    assert len(people) >= 2
    html = people[0]._repr_html_()
    assert html is not None
    well_formed(html)
    assert f"{people[0].faces} faces in {people[0].photos} photos" in html
    assert len(assert_capped(html)) == 1  # the cover face
    assert not paths_in(html) and str(wb.home) not in html
