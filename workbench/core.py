"""`Workbench`: the one way to open a workbench (catalog + vector index + model pack)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
from loguru import logger
from numpy.typing import NDArray
from sqlalchemy import func, select

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.faces.calibration import Calibration, load_calibration
from workbench.faces.packs import ComposedPack, ModelPack, open_pack
from workbench.monitoring import ensure_logging, progress_bar
from workbench.pipeline import Ingest, IngestReport

if TYPE_CHECKING:
    from workbench.cluster import ClusterParams
    from workbench.people import ClusterOutcome, People
from workbench.search import ImageInput, QueryFace, search_sample
from workbench.settings import IndexType, Metric, WorkbenchSettings
from workbench.store.catalog import Catalog, Face, Photo
from workbench.store.vectors import IndexSpec, VectorIndex


@dataclass
class PackIndexState:
    pack: str
    collection: str
    catalog_faces: int
    index_vectors: int

    @property
    def agree(self) -> bool:
        return self.catalog_faces == self.index_vectors


@dataclass
class Stats:
    """Photo counts per source and status, and whether catalog and index agree."""

    photos: int
    faces: int
    by_source_status: list[dict[str, Any]] = field(default_factory=list)
    packs: list[PackIndexState] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return all(p.agree for p in self.packs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "faces": self.faces,
            "by_source_status": self.by_source_status,
            "packs": [
                {
                    "pack": p.pack,
                    "collection": p.collection,
                    "catalog_faces": p.catalog_faces,
                    "index_vectors": p.index_vectors,
                    "agree": p.agree,
                }
                for p in self.packs
            ],
            "agree": self.agree,
        }


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
        index: VectorIndex | None = None,
    ) -> None:
        ensure_logging()
        self.settings = settings or WorkbenchSettings()
        self.home: Path = self.settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self._pack, self._catalog, self._index = pack, catalog, index

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
        return pack if pack is not None and pack._loaded else None  # noqa: SLF001

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.settings.catalog_url)
        return self._catalog

    @property
    def index(self) -> VectorIndex:
        if self._index is None:
            self._index = VectorIndex(self.settings.milvus_uri, self.settings.storage)
        return self._index

    @property
    def metric(self) -> Metric:
        """The distance the pack's faces are compared by: their collection's, once it exists,
        else the settings' (``storage.metric``), else the embedder's own."""
        if self.index.has(self.collection):
            return self.index.index_spec(self.collection).metric
        return self.settings.storage.metric or self.pack.metric

    @cached_property
    def calibration(self) -> Calibration:
        cal = self._load_calibration()
        if not cal.calibrated:
            logger.warning(
                "pack {} has no calibration; similarity % uses a generic threshold of {}. "
                "Run `workbench calibrate --lfw DIR` to measure its own.",
                self.pack.name,
                cal.threshold,
            )
        return cal

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        if self._catalog is not None:
            self._catalog.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- operations --------------------------------------------------------
    def ingest(
        self,
        paths: Iterable[str | Path],
        source: str | None = None,
        progress: bool = True,
        retry_errors: bool = False,
        embed: bool = True,
    ) -> IngestReport:
        """Add photos from files, folders, zip archives (or registered sources).

        Photos already in the catalog (same sha256) are skipped; bad photos are
        recorded with status ``error`` and the reason, and the batch goes on.
        ``retry_errors`` tries photos recorded as errors again (after a fix or
        a raised limit) instead of skipping them. ``embed=False`` only
        registers photos (status ``pending``, no model loaded); `embed` then
        analyses them. Once the pack has people, new faces join them
        (`cluster` with ``incremental=True``).
        """
        run = Ingest(self, progress=progress, retry_errors=retry_errors, analyze=embed)
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
        report = Ingest(self, progress=progress).run_catalog()
        self._assign_new_faces(report)
        return report

    def _assign_new_faces(self, report: IngestReport) -> None:
        """New faces join the pack's people at once, once there are people to join."""
        if report.faces and self.catalog.has_people(self.pack.name):
            self.cluster(incremental=True)

    def search(
        self,
        image: ImageInput,
        top_k: int | None = None,
        threshold: float | None = None,
        source: str | None = None,
    ) -> list[QueryFace]:
        """Every face in ``image`` with its top-K matches at or above ``threshold`` %."""
        return search_sample(self, image, top_k, threshold, source)

    # ---- people ------------------------------------------------------------
    @property
    def people(self) -> People:
        """The people of this workbench's pack: list, name, merge, split, hide, reject."""
        from workbench.people import People

        return People(self.catalog, self.pack.name)

    def cluster_params(
        self, method: str | None = None, *, link_percent: float | None = None, **overrides: Any
    ) -> ClusterParams:
        """The pack's clustering defaults, with ``overrides`` (`ClusterParams` fields) applied.

        Faces are linked at ``link_percent`` calibrated similarity (default
        99.99 %); ``min_similarity`` (a cosine) overrides that directly.
        """
        from workbench.cluster import DEFAULT_LINK_PERCENT, ClusterParams

        cal = self._load_calibration()
        base = ClusterParams.for_calibration(cal, link_percent or DEFAULT_LINK_PERCENT)
        return base.with_overrides(method=method, **overrides)

    def cluster(
        self, method: str | None = None, *, incremental: bool = False, **overrides: Any
    ) -> ClusterOutcome:
        """Group the pack's faces into people; returns what changed.

        Full (default): clusters every face (``method`` dbscan, hdbscan or
        kmeans; parameters default to the pack's, see `cluster_params`) and
        rebuilds the unconfirmed people around the confirmed ones, keeping
        names, merges, splits, hidden people and rejections.
        ``incremental=True``: only faces no clustering has seen join people
        (or form new ones); nothing else moves.
        """
        import time

        from workbench.facemap import neighbour_graph
        from workbench.people import assign_new, recluster

        params = self.cluster_params(method, **overrides)
        pack = self.pack.name
        started = time.perf_counter()
        run_id = None
        if incremental:
            outcome = assign_new(self, pack, params)
        else:
            run_id = self.catalog.start_run(pack, [], kind="cluster")
            vectors = self.catalog.face_vectors(pack)
            graph = (
                neighbour_graph(self.home, pack, vectors[0], vectors[2], params.n_neighbors)
                if params.method != "kmeans" and len(vectors[0])
                else None
            )
            outcome = recluster(
                self.catalog, pack, params, graph=graph, vectors=vectors, run_id=run_id
            )
        outcome.seconds = time.perf_counter() - started
        if run_id is not None:
            self.catalog.finish_run(run_id, outcome.to_dict())
        logger.info(outcome.summary())
        return outcome

    def export(
        self,
        what: str,
        out: str | Path,
        fmt: str | None = None,
        *,
        source: str | None = None,
        person: int | None = None,
    ) -> Any:
        """Stream faces, photos or people to CSV / JSON / XLSX (`workbench.export.export`)."""
        from workbench.export import export

        return export(self, what, fmt, out, source=source, person=person)  # type: ignore[arg-type]

    def register_pack(self) -> None:
        pack = self.pack.load()
        self.catalog.register_pack(pack.name, pack.embedding_dim, pack.collection_name)
        self.index.ensure_collection(
            self.collection, pack.embedding_dim, metric=self.settings.storage.metric or pack.metric
        )

    @property
    def collection(self) -> str:
        """The Milvus collection of the pack in use: where the catalog says its faces went
        (homes made before collections were per embedder keep theirs), else its own."""
        for row in self.catalog.packs():
            if row.name == self.pack.name:
                return str(row.collection)
        return self.pack.collection_name

    def sync_index(self, pack_name: str | None = None) -> int:
        """Bring the pack's vectors in line with the catalog; return vectors written.

        First pushes faces not yet marked indexed (an interrupted write);
        then, if counts still differ, compares ids both ways.
        """
        pack_row = self._pack_row(pack_name or self.pack.name)
        name, collection = pack_row.name, pack_row.collection
        written = 0
        while rows := self.catalog.unindexed_faces(name):
            self._upsert(collection, name, rows)
            written += len(rows)
        if self.index.count(collection, name) != self.catalog.count_faces(name):
            in_catalog = self.catalog.face_ids(name)
            in_index = self.index.ids(collection, name)
            stale = sorted(in_index - in_catalog)
            missing = sorted(in_catalog - in_index)
            if stale:
                self.index.delete(collection, stale)
            for i in range(0, len(missing), 5000):
                rows = list(self.catalog.faces_by_ids(missing[i : i + 5000]).values())
                self._upsert(collection, name, rows)
                written += len(rows)
            logger.info(
                "index {} ({}): removed {} stale, restored {} missing vectors",
                collection,
                name,
                len(stale),
                len(missing),
            )
        if written:
            self.index.flush(collection)
        return written

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
        _check_choice("index type", index_type, get_args(IndexType))
        _check_choice("metric", metric, get_args(Metric))
        pack_row = self._pack_row(pack_name or self.pack.name)
        collection = pack_row.collection
        # Packs sharing the embedder share the collection: rebuild all of them.
        sharing = [p.name for p in self.catalog.packs() if p.collection == collection]
        if metric is None and self.index.has(collection):
            metric = self.index.index_spec(collection).metric  # kept unless asked
        # Refuse settings the new index cannot be built with before dropping the old one.
        self.index.build_params(
            collection, pack_row.embedding_dim, index_type or self.settings.storage.index_type
        )
        self.__dict__.pop("calibration", None)  # it belongs to the metric in use
        self.index.drop(collection)
        self.index.ensure_collection(
            collection, pack_row.embedding_dim, index_type=index_type, metric=metric
        )
        total = sum(self.catalog.count_faces(name) for name in sharing)
        written = 0
        with progress_bar(
            total=total, desc=f"reindex {collection}", unit="face", enabled=progress
        ) as bar:
            for name in sharing:
                for rows in self.catalog.iter_faces(name):
                    self._upsert(collection, name, rows)
                    written += len(rows)
                    bar.update(len(rows))
        self.index.flush(collection)
        return written

    def index_spec(self, pack_name: str | None = None) -> IndexSpec:
        """The index type and metric of the pack's collection, as Milvus has it (no model runs)."""
        # A pack's name is known without loading its models; the collection is in the catalog.
        pack_row = self._pack_row(pack_name or self.pack.name)
        return self.index.index_spec(pack_row.collection)

    def delete_photo(self, ref: str | int) -> int:
        """Remove a photo (by id, sha256 or uri) and its faces from catalog and index."""
        photo = self.catalog.find_photo(str(ref))
        if photo is None:
            raise WorkbenchError(f"no photo with id, sha256 or uri {ref!r} in {self.home}")
        packs = {p.name: p for p in self.catalog.packs()}
        with self.catalog.session() as s:
            faces = list(s.execute(select(Face.id, Face.pack).where(Face.photo_id == photo.id)))
        # Index first: a crash after this leaves catalog rows whose vectors the
        # next sync restores, never vectors pointing at a deleted photo.
        by_pack: dict[str, list[int]] = {}
        for face_id, pack in faces:
            by_pack.setdefault(pack, []).append(face_id)
        for pack, ids in by_pack.items():
            if pack in packs:
                self.index.delete(packs[pack].collection, ids)
        with self.catalog.session.begin() as s:
            s.delete(s.get(Photo, photo.id))
        return len(faces)

    def stats(self) -> Stats:
        """Counts per source and status, and per pack whether catalog and index agree."""
        with self.catalog.session() as s:
            rows = s.execute(
                select(Photo.source, Photo.status, func.count(Photo.id))
                .group_by(Photo.source, Photo.status)
                .order_by(Photo.source, Photo.status)
            ).all()
            photos = int(s.scalar(select(func.count(Photo.id))) or 0)
            faces = int(s.scalar(select(func.count(Face.id))) or 0)
        packs = [
            PackIndexState(
                p.name,
                p.collection,
                self.catalog.count_faces(p.name),
                self.index.count(p.collection, p.name),
            )
            for p in self.catalog.packs()
        ]
        return Stats(
            photos,
            faces,
            [{"source": src, "status": st, "photos": n} for src, st, n in rows],
            packs,
        )

    # ---- helpers -----------------------------------------------------------
    def _load_calibration(self) -> Calibration:
        pack = self.pack
        embedder = pack.parts[1] if isinstance(pack, ComposedPack) else None
        return load_calibration(pack.name, self.home, self.metric, embedder)

    def _pack_row(self, name: str) -> Any:
        for p in self.catalog.packs():
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.catalog.packs()) or "(none yet)"
        raise WorkbenchError(f"pack {name!r} has no faces in {self.home}; packs here: {known}")

    def write_vectors(
        self,
        collection: str,
        face_ids: Sequence[int],
        photo_ids: Sequence[int],
        sources: Sequence[str],
        vectors: NDArray[np.float32],
        pack: str,
    ) -> None:
        """Upsert catalog faces' vectors, then flag them indexed (the order crash safety needs)."""
        self.index.upsert(collection, face_ids, photo_ids, sources, vectors, pack)
        self.catalog.mark_indexed(face_ids)

    def _upsert(self, collection: str, pack: str, rows: list[Face]) -> None:
        photos = self.catalog.photos_by_ids({f.photo_id for f in rows})
        self.write_vectors(
            collection,
            [f.id for f in rows],
            [f.photo_id for f in rows],
            [photos[f.photo_id].source for f in rows],
            np.stack([f.vector() for f in rows]),
            pack,
        )


def _check_choice(what: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise ConfigurationError(f"{what} {value!r} is not one of {', '.join(allowed)}")


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
