"""The ingest job: register photos → detect → align → embed → write catalog + index.

Stages can also run apart (the notebooks ``01_ingest`` → ``02_embed`` →
``03_index``): a register-only run (no pack) reads, hashes and decodes photos
and records them ``pending`` without loading a model; an embed run
(`Ingest.run_catalog`) analyses every photo the pack has not analysed yet,
reading it again from where it was registered.

Crash safety is the store's (`workbench.store.faces.FaceStore`): a batch's
photos and faces are committed before their vectors go to Milvus, and a run
first brings the index in line with the catalog (`FaceStore.sync`), so a
``kill -9`` at any point ends in agreement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from workbench.errors import ConfigurationError, WorkbenchError
from workbench.faces.pack import ModelPack
from workbench.faces.types import AnalyzedFace
from workbench.imaging.decode import DecodedImage, decode_image, sha256
from workbench.imaging.duplicates import DuplicateIndex, perceptual_hash
from workbench.imaging.thumbnails import ThumbnailCache
from workbench.monitoring import metrics as mon
from workbench.monitoring.logs import progress_bar
from workbench.settings import WorkbenchSettings
from workbench.sources import PhotoRef, open_source, reopen_photo
from workbench.sources.base import named
from workbench.store.catalog import Catalog
from workbench.store.faces import FaceStore, PhotoWrite
from workbench.store.models import Photo, Run


@dataclass
class IngestReport:
    """Counts of one ingest run (the CLI's ``--json`` prints the first five)."""

    photos: int = 0
    faces: int = 0
    no_faces: int = 0
    errors: int = 0
    skipped: int = 0
    pending: int = 0
    """Photos registered for a later embed run (register-only runs)."""
    duplicates: int = 0
    """Photos recorded as resized or re-encoded copies of another (not analysed again)."""
    kind: str = "ingest"
    run_id: int | None = None
    seconds: float = 0.0
    error_details: list[tuple[str, str]] = field(default_factory=list)
    source_errors: list[tuple[str, str]] = field(default_factory=list)
    """Sources given that could not be listed at all (a missing folder, a wrong link)."""

    def counts(self) -> dict[str, int]:
        """What ``ingest --json`` prints (a contract: these five keys)."""
        return {k: getattr(self, k) for k in ("photos", "faces", "no_faces", "errors", "skipped")}

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: what the run had done by then (``report``), all of it stored;
    running it again goes on from there."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__("interrupted")
        self.report = report


@dataclass
class _Prepared:
    """A photo read, hashed and (unless already done) decoded, ready for the models."""

    ref: PhotoRef
    sha: str | None = None
    size: int | None = None
    image: DecodedImage | None = None
    error: str | None = None
    error_kind: str = "read"
    """What failed, for the errors-by-kind metric: read, decode, analysis or poison."""
    done_before: bool = False
    existing_id: int | None = None
    """Catalog row this photo updates (same bytes seen before, or a retried error)."""
    stale_id: int | None = None
    """An earlier error row of the same uri, replaced now that (new) bytes were read."""
    phash: str | None = None
    """Perceptual hash of the decoded pixels (`workbench.imaging.duplicates`)."""
    copy_of: int | None = None
    """The catalog photo this one is a resized or re-encoded copy of."""
    copy_in_batch: int | None = None
    """The earlier photo of the same batch this one is a copy of (its position)."""


@dataclass(frozen=True)
class _Job:
    """A photo to process; ``photo`` is its catalog row when an embed run re-reads it."""

    ref: PhotoRef
    photo: Photo | None = None


class _Reader:
    """Read, hash, look up, decode: everything before the models, safe in a worker thread.

    ``pack`` is the analysing pack's name (None in a register-only run).
    `prepare` never raises: whatever goes wrong becomes the photo's error.
    """

    def __init__(
        self, catalog: Catalog, settings: WorkbenchSettings, retry_errors: bool, pack: str | None
    ) -> None:
        self.catalog = catalog
        self.limits = settings.limits
        self.thumbnails = ThumbnailCache(settings)
        self.retry_errors = retry_errors
        self.pack = pack

    def prepare(self, job: _Job) -> _Prepared:
        ref, row = job.ref, job.photo
        if row is not None:
            return self._prepare_registered(ref, row)
        if self._known_before_reading(ref):
            return _Prepared(ref, done_before=True)
        failed = self.catalog.error_photo(ref.source, ref.uri)
        stale_id = failed.id if failed is not None else None
        data, error = _read(ref)
        if data is None:
            known_error = stale_id is not None and not self.retry_errors
            return _Prepared(ref, error=error, done_before=known_error, existing_id=stale_id)
        item = _Prepared(ref, sha=sha256(data), size=len(data), stale_id=stale_id)
        if ref.sha256 is not None and item.sha != ref.sha256.lower():
            # Kept as a read failure (no hash): the next run downloads it again.
            got, item.sha, item.existing_id = item.sha, None, stale_id
            item.error = (
                f"downloaded bytes do not match the sha256 the service published "
                f"({ref.sha256[:12]}…, got {got[:12]}…); run the ingest again"
            )
            return item
        existing = self.catalog.photo_by_sha(item.sha)
        if existing is not None:
            if self._already_done(existing):
                item.done_before = True
                return item
            item.existing_id = existing.id
        return self._decode(item, data)

    def _already_done(self, photo: Photo) -> bool:
        """Whether this run has nothing to add to a photo the catalog has (same bytes).

        A photo another pack analysed is analysed again for this pack; one that
        cannot be decoded stays an error for every pack, unless retried. A
        register-only run has nothing to add to a photo it already has.
        """
        if self.retry_errors and photo.status == "error":
            return False
        if photo.status == "duplicate":  # its faces are the original's
            return True
        undecodable = photo.status == "error" and photo.width is None
        return undecodable or self.pack is None or self.catalog.analysed_by(photo, self.pack)

    def _known_before_reading(self, ref: PhotoRef) -> bool:
        """Whether a remote photo needs no download: the catalog has it by the hash the
        service published or by a uri that names fixed bytes, and has its verdict."""
        if ref.sha256 is None and not ref.stable_uri:
            return False
        known = self.catalog.known_photo(ref.origin, ref.uri, ref.sha256)
        if known is None or known.sha256 is None:  # never read: download it (again)
            return False
        return self._already_done(known)

    def _prepare_registered(self, ref: PhotoRef, row: Photo) -> _Prepared:
        """Read a registered photo again; it must still be the bytes that were registered."""
        item = _Prepared(ref, existing_id=row.id)
        data, item.error = _read(ref)
        if data is None:
            return item
        item.sha, item.size = sha256(data), len(data)
        if row.sha256 is not None and item.sha != row.sha256:
            # Keep the registered hash: another row may own the new bytes.
            item.error = (
                f"changed since it was registered (sha256 {row.sha256[:12]}…, now "
                f"{item.sha[:12]}…); ingest it again"
            )
            item.sha = row.sha256
            return item
        return self._decode(item, data)

    def _decode(self, item: _Prepared, data: bytes) -> _Prepared:
        try:
            with mon.stage("decode"):
                item.image = decode_image(data, self.limits, self.limits.analysis_side)
        except Exception as e:  # noqa: BLE001 - a decoder bug must not end the run
            item.error, item.error_kind = _describe(e), "decode"
            return item
        self._cache_thumbnail(item)
        try:
            item.phash = perceptual_hash(item.image.rgb)
        except Exception as e:  # noqa: BLE001 - without a hash a photo is only never a copy
            logger.warning("no perceptual hash for {}: {}", item.ref.uri, _describe(e))
        return item

    def _cache_thumbnail(self, item: _Prepared) -> None:
        """Write the gallery's thumbnail while the decoded photo is at hand (a resize and an
        encode, a few ms in the decode thread), so the gallery's first view of a page never
        reads and decodes full photos. Best effort: a photo without a thumbnail still ingests
        (the gallery makes it on demand)."""
        if item.sha is None or item.image is None:
            return
        try:
            self.thumbnails.put(item.sha, item.image)
        except Exception as e:  # noqa: BLE001 - a full disk or odd image must not fail the ingest
            logger.warning("no thumbnail cached for {}: {}", item.ref.uri, _describe(e))


def _read(ref: PhotoRef) -> tuple[bytes | None, str | None]:
    """The photo's bytes, or None and why they cannot be had."""
    if ref.problem:
        return None, ref.problem
    try:
        return ref.read(), None
    except Exception as e:  # noqa: BLE001 - any source failure is this photo's error
        return None, f"cannot read: {_describe(e)}"


def _describe(e: Exception) -> str:
    return str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"


class _JobQueue:
    """The run's photos, taken a batch at a time (by one reader thread at a time)."""

    def __init__(self, jobs: Sequence[_Job]) -> None:
        self._jobs = jobs
        self._next = 0

    def __bool__(self) -> bool:
        return self._next < len(self._jobs)

    def next_is_remote(self) -> bool:
        return bool(self) and self._jobs[self._next].ref.remote

    def take(self, n: int) -> Sequence[_Job]:
        taken = self._jobs[self._next : self._next + n]
        self._next += len(taken)
        return taken


@dataclass
class _Outcome:
    """What one photo of a batch came to, applied to the report once the batch committed."""

    item: _Prepared
    status: str
    """done, no_faces, error, pending or skipped (another worker analysed it meanwhile)."""
    photo_id: int | None = None
    n_faces: int = 0


class Ingest:
    """One ingest run over some sources into a face store.

    Without a ``pack`` it is a register-only run: no model is loaded and
    decodable photos are recorded ``pending``. A long-lived run (a worker's)
    is `begin`, any number of `feed`, then `end`.
    """

    def __init__(
        self,
        store: FaceStore,
        settings: WorkbenchSettings,
        pack: ModelPack | None = None,
        *,
        progress: bool = True,
        retry_errors: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.pack = pack
        self.progress = progress
        self.retry_errors = retry_errors
        self.report = IngestReport(kind="ingest" if pack is not None else "register")
        self._seen: set[str] = set()
        self._copies: dict[str, DuplicateIndex] = {}
        self._collection: str | None = None
        self._t0 = 0.0
        self.total = 0
        """Photos this run has listed so far (read by another thread: an API job's progress)."""
        self.done = 0
        """Photos of `total` handled so far."""

    @property
    def _pack_name(self) -> str | None:
        return self.pack.name if self.pack is not None else None

    def run(self, specs: Iterable[str], source: str | None = None) -> IngestReport:
        """Ingest (or, without a pack, register) the photos of these sources."""
        specs = list(specs)
        return self._run(specs, lambda: [_Job(r) for r in self._collect(specs, source)])

    def run_catalog(self) -> IngestReport:
        """Analyse every registered photo the pack has not analysed yet (the embed stage)."""
        pack = self.pack
        if pack is None:
            raise ConfigurationError("an embed run needs a model pack to analyse photos with")
        self.report.kind = "embed"

        def jobs() -> list[_Job]:
            opened: dict[str, Any] = {}
            photos = self.store.catalog.photos_to_embed(pack.name)
            return [
                _Job(
                    reopen_photo(p.source, p.origin, p.uri, p.meta or {}, self.settings, opened), p
                )
                for p in photos
            ]

        return self._run(["catalog"], jobs)

    def _run(self, specs: list[str], jobs: Callable[[], list[_Job]]) -> IngestReport:
        self.begin(specs)
        status = "interrupted"
        try:
            self._process(jobs())
            status = "done"
        except KeyboardInterrupt as e:
            raise IngestInterrupted(self.report) from e  # the report is final once end() ran
        finally:
            try:
                self.end(status)
            except Exception as e:
                if status == "done":
                    raise
                # Already failing (a full disk, say): that error is the one to report. The run
                # stays `running` until the next run on this host finds its process gone.
                logger.warning("the run's counts could not be saved: {}", e)
        return self.report

    def begin(self, specs: list[str]) -> None:
        """Load the pack, bring the index in line with the catalog, record the run."""
        self._t0 = time.perf_counter()
        if self.pack is not None:
            pack = self.pack.load()
            self._collection = self.store.collection_of(pack.name, pack.collection_name)
            self.store.register_pack(pack.name, pack.embedding_dim, self._collection, pack.metric)
            self.store.sync(pack.name)
        self.report.run_id = self.store.catalog.start_run(
            self._pack_name or "-", specs, kind=self.report.kind
        )

    def feed(self, refs: Sequence[PhotoRef]) -> None:
        """Process more photos in the run begun (a worker's batch of jobs).

        Returns once the batch's photos and faces are committed and their
        vectors written; the run's counts in the catalog follow.
        """
        self._seen.clear()  # a job delivered again must be looked at again
        self._process([_Job(r) for r in refs])
        self._save_counts("running")

    def fail(self, refs: Sequence[PhotoRef], reason: str, kind: str) -> None:
        """Record these photos as errors without reading them (a worker gives up on a job)."""
        items = []
        for ref in refs:
            failed = self.store.catalog.error_photo(ref.source, ref.uri)
            existing = failed.id if failed is not None else None
            items.append(_Prepared(ref, error=reason, error_kind=kind, existing_id=existing))
        self._seen.clear()
        self._handle_batch(items)
        self._save_counts("running")

    def end(self, status: str = "done") -> IngestReport:
        """Flush the vectors and close the run with its counts."""
        if self.report.faces and self._collection is not None:
            self.store.flush(self._collection)
        self.report.seconds = time.perf_counter() - self._t0
        self._save_counts(status)
        logger.info(
            "{} run {} done: {} ({:.2f} photos/s)",
            self.report.kind,
            self.report.run_id,
            self.report.counts(),
            self.report.photos_per_second,
        )
        return self.report

    def _save_counts(self, status: str) -> None:
        if self.report.run_id is None:
            return
        counts: dict[str, Any] = dict(self.report.counts())
        if self.report.pending:
            counts["pending"] = self.report.pending
        if self.report.duplicates:
            counts["duplicates"] = self.report.duplicates
        if status == "running":
            with self.store.catalog.session.begin() as s:
                run = s.get(Run, self.report.run_id)
                if run is not None:
                    run.counts = counts
            return
        counts["seconds"] = round(self.report.seconds, 3)
        self.store.catalog.finish_run(self.report.run_id, counts, status)

    def _collect(self, specs: Sequence[str], source: str | None) -> list[PhotoRef]:
        refs: list[PhotoRef] = []
        for spec in specs:
            try:
                # Listed whole before any photo is used: a listing that fails
                # half-way (an album that turns private) writes nothing.
                listed = list(open_source(spec, self.settings, source).refs())
            except WorkbenchError as e:
                logger.error("{}", named(spec, str(e)))
                mon.ERRORS.labels(kind="source").inc()
                self.report.errors += 1
                self.report.error_details.append((spec, str(e)))
                self.report.source_errors.append((spec, str(e)))
                continue
            refs.extend(listed)
        return refs

    def _process(self, jobs: Sequence[_Job]) -> None:
        self.total += len(jobs)
        bar = progress_bar(
            total=len(jobs), desc=self.report.kind, unit="photo", enabled=self.progress
        )
        reader = _Reader(self.store.catalog, self.settings, self.retry_errors, self._pack_name)
        queue = _JobQueue(jobs)
        # Reading and decoding the next batch overlaps with the models on this one
        # (Pillow and zlib release the GIL): two batches in memory at most.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            ahead: Future[list[_Prepared]] | None = None
            while True:
                current = ahead.result() if ahead else self._read_batch(reader, queue)
                if not current:
                    break
                ahead = pool.submit(self._read_batch, reader, queue) if queue else None
                self._handle_batch(current)
                self.done += len(current)
                bar.update(len(current))
                bar.set_postfix(faces=self.report.faces, errors=self.report.errors, refresh=False)
                if ahead is None:
                    break
        bar.close()

    def _read_batch(self, reader: _Reader, queue: _JobQueue) -> list[_Prepared]:
        """The next batch: ``batch_size`` photos, cut short once their decoded pixels reach
        ``limits.pixels_in_flight`` (a batch of 6000 × 6000 photos would hold gigabytes)."""
        size = self.settings.batch_size
        downloads = self.settings.remote.downloads
        if downloads > 1 and queue.next_is_remote():
            # Downloads wait on the network: a few at a time (order kept).
            jobs = queue.take(size)
            with ThreadPoolExecutor(max_workers=downloads, thread_name_prefix="dl") as pool:
                return list(pool.map(reader.prepare, jobs))
        budget = self.settings.limits.pixels_in_flight
        batch: list[_Prepared] = []
        pixels = 0
        while len(batch) < size and queue:
            item = reader.prepare(queue.take(1)[0])
            batch.append(item)
            pixels += item.image.pixels if item.image is not None else 0
            if budget and pixels >= budget:
                break
        return batch

    def _handle_batch(self, items: list[_Prepared]) -> None:
        todo: list[_Prepared] = []
        for item in items:
            key = item.sha or f"{item.ref.source}\0{item.ref.uri}"
            if item.done_before or key in self._seen:
                self._count(_Outcome(item, "skipped"))
                continue
            self._seen.add(key)
            todo.append(item)
        self._find_copies(todo)
        originals = [it for it in todo if it.copy_of is None and it.copy_in_batch is None]
        analysed = _analyze(self.pack, originals) if self.pack is not None else {}
        by_item = {id(originals[i]): faces for i, faces in analysed.items()}
        results = {i: by_item[id(it)] for i, it in enumerate(todo) if id(it) in by_item}
        writes = [_write_of(item, results.get(i, [])) for i, item in enumerate(todo)]
        with mon.stage("store"):
            committed, vectors = self.store.commit_photos(
                writes, self._pack_name, self.report.run_id
            )
        for item, c in zip(todo, committed, strict=True):
            self._count(_Outcome(item, c.status, c.photo_id, c.n_faces))
            if item.phash and c.photo_id is not None and c.status not in ("duplicate", "error"):
                self._copy_index(item.ref.source).add(c.photo_id, item.phash)
        if vectors.face_ids and self.pack is not None and self._collection is not None:
            with mon.stage("store"):
                self.store.write_vectors(self._collection, vectors, self.pack.name)

    def _copy_index(self, source: str) -> DuplicateIndex:
        """A source's photos by perceptual hash, read once per run, then kept current."""
        if source not in self._copies:
            index = self._copies[source] = DuplicateIndex()
            for photo_id, phash in self.store.catalog.photo_hashes(source):
                index.add(photo_id, phash)
        return self._copies[source]

    def _find_copies(self, todo: list[_Prepared]) -> None:
        """Mark the new photos of a batch that are copies of a photo of their source (in the
        catalog or earlier in the batch); copies are recorded, not analysed.

        Copies are looked for within a source: a source is a collection a search or the
        gallery can be narrowed to, so the same picture in two sources is a photo of each.
        """
        batch: dict[str, DuplicateIndex] = {}
        for i, item in enumerate(todo):
            if item.phash is None or item.error is not None or item.existing_id is not None:
                continue
            source = item.ref.source
            item.copy_of = self._copy_index(source).find(item.phash)
            if item.copy_of is None:
                item.copy_in_batch = batch.setdefault(source, DuplicateIndex()).find(item.phash)
            if item.copy_of is None and item.copy_in_batch is None:
                batch.setdefault(source, DuplicateIndex()).add(i, item.phash)

    def _count(self, outcome: _Outcome) -> None:
        """Apply one photo's outcome to the report, the metrics and the log."""
        report, item, pack = self.report, outcome.item, self._pack_name or "-"
        log = logger.bind(photo=outcome.photo_id if outcome.photo_id is not None else item.ref.uri)
        mon.PHOTOS_PROCESSED.labels(pack=pack, status=outcome.status).inc()
        if outcome.status == "skipped":
            report.skipped += 1
            return
        report.photos += 1
        if outcome.status == "duplicate":
            report.duplicates += 1
            log.info("{}: a copy of a photo already here; not analysed again", item.ref.uri)
            return
        if outcome.status == "error":
            report.errors += 1
            report.error_details.append((item.ref.uri, item.error or ""))
            mon.ERRORS.labels(kind=item.error_kind).inc()
            log.warning("{}: error: {}", item.ref.uri, item.error)
        elif outcome.status == "pending":
            report.pending += 1
        elif outcome.status == "no_faces":
            report.no_faces += 1
            log.info("{}: no faces found", item.ref.uri)
        else:
            report.faces += outcome.n_faces
            mon.FACES_PROCESSED.labels(pack=pack).inc(outcome.n_faces)
            log.debug("{}: {} faces", item.ref.uri, outcome.n_faces)


def _analyze(pack: ModelPack, todo: list[_Prepared]) -> dict[int, list[AnalyzedFace]]:
    """Faces of every decodable photo, batched across photos where the pack can."""
    ready = [(i, it) for i, it in enumerate(todo) if it.error is None and it.image is not None]
    try:
        faces = pack.analyze_many([it.image.rgb for _, it in ready])  # type: ignore[union-attr]
        return {i: f for (i, _), f in zip(ready, faces, strict=True)}
    except Exception:  # noqa: BLE001 - retry one by one to name the photo that failed
        logger.debug("batched analysis failed; retrying photo by photo")
    results: dict[int, list[AnalyzedFace]] = {}
    for i, item in ready:
        try:
            results[i] = pack.analyze(item.image.rgb)  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001 - one bad photo must not stop the batch
            item.error = f"face analysis failed: {type(e).__name__}: {e}"
            item.error_kind = "analysis"
    return results


def _write_of(item: _Prepared, faces: list[AnalyzedFace]) -> PhotoWrite:
    """What the store is to record of one prepared (and maybe analysed) photo."""
    ref, image = item.ref, item.image
    return PhotoWrite(
        source=ref.source,
        origin=ref.origin,
        uri=ref.uri,
        meta=dict(ref.metadata),
        sha256=item.sha,
        size=item.size,
        decoded=(*image.size, image.format) if image is not None else None,
        error=item.error,
        # Found in the pixels decoded for the models; stored in the photo's own.
        faces=[f.scaled(image.scale) for f in faces] if item.error is None and image else [],
        existing_id=item.existing_id,
        stale_id=item.stale_id,
        phash=item.phash,
        copy_of=item.copy_of,
        copy_in_batch=item.copy_in_batch,
    )


__all__ = ["Ingest", "IngestInterrupted", "IngestReport"]
