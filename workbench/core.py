"""`Workbench`: the one way to open a workbench (face store + model pack), a thin facade.

It opens the parts lazily and hands each operation to the stage that owns it
(`workbench.ingest`, `workbench.analysis`, `workbench.store.faces.FaceStore`);
nothing inside the package's stages imports it, only the surfaces (CLI, widgets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from workbench.analysis.pictures import Pictures
from workbench.analysis.search import (
    SETTINGS_TOP_K,
    ImageInput,
    Match,
    TopK,
    search_face,
    search_sample,
)
from workbench.analysis.search_result import SearchResult
from workbench.faces.calibration import Calibration, load_calibration
from workbench.faces.pack import ComposedPack, ModelPack
from workbench.faces.registry import open_pack
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.ingest.pipeline import Ingest, IngestReport
from workbench.monitoring.logs import ensure_logging
from workbench.settings import IndexType, Metric, WorkbenchSettings
from workbench.store.catalog import Catalog
from workbench.store.catalog_vectors import CatalogVectors
from workbench.store.faces import FaceStore, Stats, open_exact, open_vectors
from workbench.store.vectors import IndexSpec, VectorIndex

if TYPE_CHECKING:
    from workbench.analysis.cluster import ClusterParams
    from workbench.analysis.export import ExportResult
    from workbench.analysis.facemap import FaceMap, Projection
    from workbench.analysis.grouping import ClusterOutcome
    from workbench.analysis.people import People
    from workbench.evaluation.archive_search import SearchEvaluation
    from workbench.ingest.quality import QualityReport


class Workbench:
    """A photo collection's catalog, vector index and model pack.

    Parts open lazily: `stats` never loads a model; `ingest` and `search`
    load the pack on first use. Use as a context manager, or call `close`.
    """

    def __init__(
        self,
        settings: WorkbenchSettings | None = None,
        *,
        pack: ModelPack | None = None,
        catalog: Catalog | None = None,
        index: VectorIndex | CatalogVectors | None = None,
    ) -> None:
        ensure_logging()
        self.settings = settings or WorkbenchSettings()
        self.home: Path = self.settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self._pack, self._catalog, self._index = pack, catalog, index
        self._store: FaceStore | None = None

    # ---- parts -------------------------------------------------------------
    @property
    def pack(self) -> ModelPack:
        if self._pack is None:
            self._pack = open_pack(self.settings.pack, self.settings)
        return self._pack

    @property
    def loaded_pack(self) -> ModelPack | None:
        """The pack if it has been opened and loaded already (asking loads nothing)."""
        pack = self._pack
        return pack if pack is not None and pack.loaded else None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.settings.catalog_url)
        return self._catalog

    @property
    def index(self) -> VectorIndex | CatalogVectors:
        if self._index is None:
            self._index = open_vectors(self.settings, self.catalog)
        return self._index

    @property
    def store(self) -> FaceStore:
        """Catalog and index together: writes, sync, reindex, delete, stats."""
        if self._store is None:
            self._store = FaceStore(
                self.catalog, self.index, open_exact(self.settings, self.catalog)
            )
        return self._store

    @property
    def collection(self) -> str:
        """The Milvus collection of the pack in use: where the catalog says its faces went
        (homes made before collections were per embedder keep theirs), else its own."""
        return self.store.collection_of(self.pack.name, self.pack.collection_name)

    @property
    def metric(self) -> Metric:
        """The distance the pack's faces are compared by: their collection's, once it exists,
        else the settings' (``storage.metric``), else the embedder's own."""
        default = self.settings.storage.metric or self.pack.metric
        return self.store.metric_of(self.collection, default)

    @property
    def pictures(self) -> Pictures:
        """Thumbnails for the notebook displays of this workbench's results (no model runs)."""
        return Pictures(self.catalog, ThumbnailCache(self.settings), self.pack.name)

    @cached_property
    def calibration(self) -> Calibration:
        cal = self._load_calibration()
        if cal.false_match is None:
            logger.warning(
                "pack {} has no measured false-match rates; its similarity % follows a generic"
                " curve. Run `workbench calibrate --lfw DIR` to measure its own.",
                self.pack.name,
            )
        return cal

    def calibration_for(self, pack: str, metric: Metric) -> Calibration:
        """The calibration of ``pack``'s faces under ``metric`` (the open pack's own when it is
        that pack, so a mixed pack borrows its embedder's)."""
        if pack == self.pack.name:
            return self.calibration
        return load_calibration(pack, self.home, metric)

    def _load_calibration(self) -> Calibration:
        pack = self.pack
        embedder = pack.parts[1] if isinstance(pack, ComposedPack) else None
        return load_calibration(pack.name, self.home, self.metric, embedder)

    def close(self) -> None:
        if self._store is not None and self._store.exact is not None:
            self._store.exact.close()
        if self._index is not None:
            self._index.close()
        if self._catalog is not None:
            self._catalog.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- ingest --------------------------------------------------------------
    def ingest(
        self,
        paths: Iterable[str | Path],
        source: str | None = None,
        progress: bool = True,
        retry_errors: bool = False,
        register_only: bool = False,
        watch: Callable[[Ingest], None] | None = None,
    ) -> IngestReport:
        """Add photos from files, folders, zip archives (or registered sources).

        Photos already in the catalog (same sha256) are skipped; bad photos are
        recorded with status ``error`` and the reason, and the batch goes on.
        ``retry_errors`` tries photos recorded as errors again (after a fix or
        a raised limit) instead of skipping them. ``register_only`` only
        registers photos (status ``pending``, no model loaded); `embed` then
        analyses them. Once the pack has people, new faces join them
        (`cluster` with ``incremental=True``). ``watch`` is given the run before it
        starts (another thread can read its ``done`` / ``total`` and counts).
        """
        pack = None if register_only else self.pack
        run = Ingest(self.store, self.settings, pack, progress=progress, retry_errors=retry_errors)
        if watch is not None:
            watch(run)
        report = run.run([str(p) for p in paths], source)
        self._assign_new_faces(report)
        return report

    def embed(self, progress: bool = True) -> IngestReport:
        """Detect, align and embed every catalog photo this pack has not analysed yet.

        That is registered (``pending``) photos and photos another pack
        analysed; each is read again from its source and must still have the
        bytes it was registered with. Batched across photos (``batch_size``),
        on CUDA when the device setting allows and onnxruntime has it.
        """
        report = Ingest(self.store, self.settings, self.pack, progress=progress).run_catalog()
        self._assign_new_faces(report)
        self.measure_quality(progress=progress)  # faces stored before quality was measured
        return report

    def measure_quality(self, every_pack: bool = False, progress: bool = True) -> QualityReport:
        """Measure size, sharpness and pose of the faces (of this pack, or of every pack)
        stored before quality was measured; their photos are read again for sharpness."""
        from workbench.ingest.quality import backfill_quality

        pack = None if every_pack else self.pack.name  # a name: no model is loaded
        return backfill_quality(self.catalog, self.settings, pack, progress)

    def _assign_new_faces(self, report: IngestReport) -> None:
        """New faces join the pack's people at once, once there are people to join."""
        if report.faces and self.catalog.has_people(self.pack.name):
            self.cluster(incremental=True)

    def register_pack(self) -> None:
        """Record the pack and make its collection (an ingest does it before its first face)."""
        pack = self.pack.load()
        self.store.register_pack(pack.name, pack.embedding_dim, self.collection, pack.metric)

    # ---- search --------------------------------------------------------------
    def search(
        self,
        image: ImageInput,
        top_k: TopK = SETTINGS_TOP_K,
        threshold: float | None = None,
        source: str | None = None,
        include_low_quality: bool = False,
    ) -> SearchResult:
        """Every face in ``image`` with its matches at or above ``threshold`` %: a list of
        `QueryFace` that a notebook shows with thumbnails (`SearchResult`).

        ``top_k``: matches per face (default: ``search.top_k`` of the settings, 10), or
        None for every match. Each answer says the gallery it searched and the strangers
        to expect at that threshold; faces below the quality gate are left out unless
        ``include_low_quality``.
        """
        faces = search_sample(
            self.store,
            self.pack,
            self.calibration,
            self.settings,
            image,
            top_k,
            threshold,
            source,
            include_low_quality,
        )
        return SearchResult(
            faces,
            sample=image,
            threshold=self.settings.search.resolve_threshold(threshold),
            pictures=self.pictures,
            limits=self.settings.limits,
        )

    def search_face(
        self,
        face_id: int,
        top_k: TopK = SETTINGS_TOP_K,
        threshold: float | None = None,
        include_low_quality: bool = False,
    ) -> list[Match]:
        """Faces of other photos matching the stored face ``face_id`` (no model runs)."""
        return search_face(
            self.store,
            self.calibration_for,
            self.settings,
            face_id,
            top_k,
            threshold,
            include_low_quality,
        )

    def evaluate_search(
        self,
        lfw_dir: str | Path | None = None,
        labels: str | Path | None = None,
        *,
        ingest: bool = True,
        include_low_quality: bool = False,
        percents: Sequence[float] | None = None,
        progress: bool = True,
    ) -> SearchEvaluation:
        """1:N search as users search, on a labelled folder ingested into this home.

        ``lfw_dir`` (the folder names the person) or ``labels`` (a CSV of path,identity):
        every labelled photo of a person with two or more is searched against every other
        face of the home at the default threshold and at 70/80/90/95 % (``percents``).
        The labelled photos are ingested first (those already here are skipped) unless
        ``ingest`` is False. Faces below the quality gate are left out of the answers, as
        in a search, unless ``include_low_quality``.
        """
        import numpy as np

        from workbench.evaluation.archive_search import (
            THRESHOLDS,
            evaluate_search,
            labelled_faces,
            photo_folder,
        )

        folder = photo_folder(lfw_dir, labels)
        if ingest:
            report = self.ingest([folder], progress=progress)
            if report.errors:
                logger.warning("{} labelled photos could not be ingested", report.errors)
        found, name = labelled_faces(self.catalog, self.pack.name, lfw_dir, labels)
        gate = None if include_low_quality else self.settings.quality
        gated = self.catalog.gated_face_ids(self.pack.name, gate) if gate is not None else set()
        return evaluate_search(
            self.catalog,
            self.pack.name,
            found,
            self.calibration,
            default_percent=self.settings.search.threshold,
            percents=THRESHOLDS if percents is None else percents,
            labels_name=name,
            searchable=lambda ids: np.array([int(i) not in gated for i in ids], dtype=bool),
        )

    # ---- people ------------------------------------------------------------
    @property
    def people(self) -> People:
        """The people of this workbench's pack: list, name, merge, split, hide, reject."""
        from workbench.analysis.people import People

        return People(self.catalog, self.pack.name, pictures=self.pictures)

    def cluster_params(
        self, method: str | None = None, *, link_percent: float | None = None, **overrides: Any
    ) -> ClusterParams:
        """The pack's clustering defaults, with ``overrides`` (`ClusterParams` fields) applied.

        Faces are linked at ``link_percent`` similarity (default: the pack's own, 91.4 %
        for `local`, a pair false-match rate of 5e-7); ``min_similarity`` (a cosine)
        overrides that directly.
        """
        from workbench.analysis.cluster import ClusterParams

        base = ClusterParams.for_calibration(self._load_calibration(), link_percent)
        return base.with_overrides(method=method, **overrides)

    def cluster(
        self,
        method: str | None = None,
        *,
        incremental: bool = False,
        include_low_quality: bool = False,
        **overrides: Any,
    ) -> ClusterOutcome:
        """Group the pack's faces into people; returns what changed.

        Full (default): clusters every face (``method`` dbscan, hdbscan or
        kmeans; parameters default to the pack's, see `cluster_params`) and
        rebuilds the unconfirmed people around the confirmed ones, keeping
        names, merges, splits, hidden people and rejections.
        ``incremental=True``: only faces no clustering has seen join people
        (or form new ones); nothing else moves. Faces below the quality gate stay
        in no person unless ``include_low_quality``.
        """
        from workbench.analysis.grouping import cluster_people

        params = self.cluster_params(method, **overrides)
        return cluster_people(
            self.store,
            self.home,
            self.pack.name,
            params,
            incremental=incremental,
            gate=None if include_low_quality else self.settings.quality,
        )

    def face_map(
        self, method: Projection = "auto", *, include_hidden: bool = False, seed: int | None = 0
    ) -> FaceMap:
        """Every face of the pack on a 2-D map (UMAP), with its person (`FaceMap.figure`)."""
        from workbench.analysis.facemap import face_map

        return face_map(
            self.catalog,
            self.home,
            self.pack.name,
            method,
            include_hidden=include_hidden,
            seed=seed,
        )

    # ---- catalog and index -----------------------------------------------------
    def export(
        self,
        what: str,
        out: str | Path,
        fmt: str | None = None,
        *,
        source: str | None = None,
        person: int | None = None,
    ) -> ExportResult:
        """Stream faces, photos or people to CSV / JSON / XLSX (`workbench.analysis.export`)."""
        from workbench.analysis.export import export

        return export(self.catalog, what, out, fmt, source=source, person=person)

    def sync_index(self, pack_name: str | None = None) -> int:
        """Bring the pack's vectors in line with the catalog; return vectors written."""
        return self.store.sync(pack_name or self.pack.name)

    def reindex(
        self,
        pack_name: str | None = None,
        *,
        index_type: IndexType | None = None,
        metric: Metric | None = None,
        progress: bool = True,
    ) -> int:
        """Rebuild the pack's Milvus collection from the catalog, without running models.

        ``index_type`` and ``metric`` switch the collection to another index
        (default: the settings'); searches read them back from Milvus.
        """
        self.__dict__.pop("calibration", None)  # it belongs to the metric in use
        return self.store.reindex(
            pack_name or self.pack.name, index_type=index_type, metric=metric, progress=progress
        )

    def index_spec(self, pack_name: str | None = None) -> IndexSpec:
        """The index type and metric of the pack's collection, as Milvus has it (no model runs)."""
        return self.store.index_spec(pack_name or self.pack.name)

    def delete_photo(self, ref: str | int) -> int:
        """Remove a photo (by id, sha256 or uri) and its faces from catalog and index."""
        return self.store.delete_photo(ref)

    def stats(self) -> Stats:
        """Counts per source and status, and per pack whether catalog and index agree."""
        return self.store.stats()


def open(  # noqa: A001 - `workbench.open(...)` reads naturally
    home: str | Path | None = None, pack: str | None = None, **overrides: Any
) -> Workbench:
    """Open (or create) a workbench; unset arguments come from ``WORKBENCH_*`` variables."""
    values: dict[str, Any] = dict(overrides)
    if home is not None:
        values["home"] = Path(home)
    if pack is not None:
        values["pack"] = pack
    return Workbench(WorkbenchSettings(**values))


__all__ = ["SearchResult", "Stats", "Workbench", "open"]
