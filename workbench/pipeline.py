"""The ingest job: register photos → detect → align → embed → write catalog + index.

Stages can also run apart (the notebooks ``01_ingest`` → ``02_embed`` →
``03_index``): a register-only run (``analyze=False``) reads, hashes and
decodes photos and records them ``pending`` without loading a model; an embed
run (`Ingest.run_catalog`) analyses every photo the pack has not analysed yet,
reading it again from where it was registered.

Crash safety: a photo and its faces are committed to the catalog in one
transaction before their vectors go to Milvus; faces carry an ``indexed``
flag set only after Milvus accepted them. A re-run first pushes every
unindexed face (upserts are idempotent: keys are face ids) and, if the counts
still differ, diffs the ids, so a ``kill -9`` at any point ends in agreement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger
from sqlalchemy.exc import IntegrityError, OperationalError

from workbench import monitoring as mon
from workbench.errors import WorkbenchError
from workbench.faces.types import AnalyzedFace
from workbench.imaging import DecodedImage, decode_image, sha256
from workbench.monitoring import progress_bar
from workbench.sources import PhotoRef, open_source
from workbench.store.catalog import Analysis, Face, Photo, Run, utcnow

if TYPE_CHECKING:
    from workbench.core import Workbench


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
    kind: str = "ingest"
    run_id: int | None = None
    seconds: float = 0.0
    error_details: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("photos", "faces", "no_faces", "errors", "skipped")}

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0


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


@dataclass(frozen=True)
class _Job:
    """A photo to process; ``photo`` is its catalog row when an embed run re-reads it."""

    ref: PhotoRef
    photo: Photo | None = None


def _prepare(job: _Job, wb: Workbench, retry_errors: bool, pack: str | None) -> _Prepared:
    """Read, hash, look up, decode: everything before the models, safe in a worker thread.

    ``pack`` is the analysing pack's name (None in a register-only run).
    Never raises: whatever goes wrong becomes the photo's error.
    """
    ref, row = job.ref, job.photo
    if row is not None:
        return _prepare_registered(ref, row, wb)
    if _known_before_reading(ref, wb, retry_errors, pack):
        return _Prepared(ref, done_before=True)
    failed = wb.catalog.error_photo(ref.source, ref.uri)
    stale_id = failed.id if failed is not None else None
    data, error = _read(ref)
    if data is None:
        known_error = stale_id is not None and not retry_errors
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
    existing = wb.catalog.photo_by_sha(item.sha)
    if existing is not None:
        if _already_done(existing, wb, retry_errors, pack):
            item.done_before = True
            return item
        item.existing_id = existing.id
    return _decode(item, data, wb)


def _already_done(photo: Photo, wb: Workbench, retry_errors: bool, pack: str | None) -> bool:
    """Whether this run has nothing to add to a photo the catalog has (same bytes).

    A photo another pack analysed is analysed again for this pack; one that
    cannot be decoded stays an error for every pack, unless retried. A
    register-only run has nothing to add to a photo it already has.
    """
    if retry_errors and photo.status == "error":
        return False
    undecodable = photo.status == "error" and photo.width is None
    return undecodable or pack is None or wb.catalog.analysed_by(photo, pack)


def _known_before_reading(
    ref: PhotoRef, wb: Workbench, retry_errors: bool, pack: str | None
) -> bool:
    """Whether a remote photo needs no download: the catalog has it by the hash the
    service published or by a uri that names fixed bytes, and has its verdict."""
    if ref.sha256 is None and not ref.stable_uri:
        return False
    known = wb.catalog.known_photo(ref.origin, ref.uri, ref.sha256)
    if known is None or known.sha256 is None:  # never read: download it (again)
        return False
    return _already_done(known, wb, retry_errors, pack)


def _prepare_registered(ref: PhotoRef, row: Photo, wb: Workbench) -> _Prepared:
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
    return _decode(item, data, wb)


def _read(ref: PhotoRef) -> tuple[bytes | None, str | None]:
    """The photo's bytes, or None and why they cannot be had."""
    if ref.problem:
        return None, ref.problem
    try:
        return ref.read(), None
    except Exception as e:  # noqa: BLE001 - any source failure is this photo's error
        return None, f"cannot read: {_describe(e)}"


def _decode(item: _Prepared, data: bytes, wb: Workbench) -> _Prepared:
    try:
        with mon.stage("decode"):
            item.image = decode_image(data, wb.settings.limits)
    except Exception as e:  # noqa: BLE001 - a decoder bug must not end the run
        item.error, item.error_kind = _describe(e), "decode"
        return item
    _cache_thumbnail(item, wb)
    return item


def _cache_thumbnail(item: _Prepared, wb: Workbench) -> None:
    """Write the gallery's thumbnail while the decoded photo is at hand (a resize and an
    encode, a few ms in the decode thread), so the gallery's first view of a page never
    reads and decodes full photos. Best effort: a photo without a thumbnail still ingests
    (the gallery makes it on demand)."""
    if item.sha is None or item.image is None:
        return
    from workbench.thumbnails import ThumbnailCache

    try:
        ThumbnailCache(wb.settings).put(item.sha, item.image)
    except Exception as e:  # noqa: BLE001 - a full disk or odd image must not fail the ingest
        logger.warning("no thumbnail cached for {}: {}", item.ref.uri, _describe(e))


def _describe(e: Exception) -> str:
    return str(e) if isinstance(e, WorkbenchError) else f"{type(e).__name__}: {e}"


def _batches(items: Sequence[PhotoRef], n: int) -> Iterator[Sequence[PhotoRef]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@dataclass
class _Outcome:
    """What one photo of a batch came to, applied to the report once the batch committed."""

    item: _Prepared
    status: str
    """done, no_faces, error, pending or skipped (another worker analysed it meanwhile)."""
    photo_id: int | None = None
    n_faces: int = 0


class Ingest:
    """One ingest run over some sources into a workbench.

    ``analyze=False`` makes it a register-only run: no model is loaded and
    decodable photos are recorded ``pending``. A long-lived run (a worker's)
    is `begin`, any number of `feed`, then `end`.
    """

    def __init__(
        self,
        wb: Workbench,
        progress: bool = True,
        retry_errors: bool = False,
        analyze: bool = True,
    ) -> None:
        self.wb = wb
        self.progress = progress
        self.retry_errors = retry_errors
        self.analyze = analyze
        self.report = IngestReport(kind="ingest" if analyze else "register")
        self._seen: set[str] = set()
        self._pack_name: str | None = None
        self._t0 = 0.0

    def run(self, specs: Iterable[str], source: str | None = None) -> IngestReport:
        """Ingest (or, with ``analyze=False``, register) the photos of these sources."""
        specs = list(specs)
        return self._run(specs, lambda: [_Job(r) for r in self._collect(specs, source)])

    def run_catalog(self) -> IngestReport:
        """Analyse every registered photo the pack has not analysed yet (the embed stage)."""
        from workbench.sources import reopen_photo

        self.report.kind = "embed"

        def jobs() -> list[_Job]:
            opened: dict[str, Any] = {}
            settings = self.wb.settings
            return [
                _Job(reopen_photo(p.source, p.origin, p.uri, p.meta or {}, settings, opened), p)
                for p in self.wb.catalog.photos_to_embed(self.wb.pack.name)
            ]

        return self._run(["catalog"], jobs)

    def _run(self, specs: list[str], jobs: Callable[[], list[_Job]]) -> IngestReport:
        self.begin(specs)
        status = "interrupted"
        try:
            self._process(jobs())
            status = "done"
        finally:
            self.end(status)
        return self.report

    def begin(self, specs: list[str]) -> None:
        """Load the pack, bring the index in line with the catalog, record the run."""
        wb = self.wb
        self._t0 = time.perf_counter()
        if self.analyze:
            pack = wb.pack.load()
            self._pack_name = pack.name
            wb.register_pack()
            wb.sync_index()
        self.report.run_id = wb.catalog.start_run(
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
            failed = self.wb.catalog.error_photo(ref.source, ref.uri)
            existing = failed.id if failed is not None else None
            items.append(_Prepared(ref, error=reason, error_kind=kind, existing_id=existing))
        self._seen.clear()
        self._handle_batch(items)
        self._save_counts("running")

    def end(self, status: str = "done") -> IngestReport:
        """Flush the vectors and close the run with its counts."""
        wb = self.wb
        if self.report.faces:
            wb.index.flush(wb.collection)
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
        if status == "running":
            with self.wb.catalog.session.begin() as s:
                run = s.get(Run, self.report.run_id)
                if run is not None:
                    run.counts = counts
            return
        counts["seconds"] = round(self.report.seconds, 3)
        self.wb.catalog.finish_run(self.report.run_id, counts, status)

    def _collect(self, specs: Sequence[str], source: str | None) -> list[PhotoRef]:
        refs: list[PhotoRef] = []
        for spec in specs:
            try:
                # Listed whole before any photo is used: a listing that fails
                # half-way (an album that turns private) writes nothing.
                listed = list(open_source(spec, self.wb.settings, source).refs())
            except WorkbenchError as e:
                logger.error("{}: {}", spec, e)
                mon.ERRORS.labels(kind="source").inc()
                self.report.errors += 1
                self.report.error_details.append((spec, str(e)))
                continue
            refs.extend(listed)
        return refs

    def _process(self, refs: Sequence[_Job]) -> None:
        bar = progress_bar(
            total=len(refs), desc=self.report.kind, unit="photo", enabled=self.progress
        )
        batch_size = self.wb.settings.batch_size
        # Reading and decoding the next batch overlaps with the models on this one
        # (Pillow and zlib release the GIL).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
            batches = list(_batches(refs, batch_size))
            ahead: Future[list[_Prepared]] | None = None
            for i, batch in enumerate(batches):
                current = ahead.result() if ahead else self._read_batch(batch)
                if i + 1 < len(batches):
                    ahead = pool.submit(self._read_batch, batches[i + 1])
                self._handle_batch(current)
                bar.update(len(current))
                bar.set_postfix(faces=self.report.faces, errors=self.report.errors, refresh=False)
        bar.close()

    def _read_batch(self, jobs: Sequence[_Job]) -> list[_Prepared]:
        def prepare(job: _Job) -> _Prepared:
            return _prepare(job, self.wb, self.retry_errors, self._pack_name)

        downloads = self.wb.settings.remote.downloads
        if downloads == 1 or not any(job.ref.remote for job in jobs):
            return [prepare(job) for job in jobs]
        # Downloads wait on the network: a few at a time (order kept).
        with ThreadPoolExecutor(max_workers=downloads, thread_name_prefix="download") as pool:
            return list(pool.map(prepare, jobs))

    def _handle_batch(self, items: list[_Prepared]) -> None:
        todo: list[_Prepared] = []
        for item in items:
            key = item.sha or f"{item.ref.source}\0{item.ref.uri}"
            if item.done_before or key in self._seen:
                self._count(_Outcome(item, "skipped"))
                continue
            self._seen.add(key)
            todo.append(item)
        results = self._analyze(todo) if self.analyze else {}
        for attempt in range(3):
            try:
                with mon.stage("store"):
                    rows, outcomes = self._write_catalog(todo, results)
                break
            except (IntegrityError, OperationalError) as e:
                # Another process (a second worker) committed one of these photos
                # meanwhile (same bytes: unique sha256), or held SQLite's write
                # lock: nothing of this batch was written; look again and retry.
                if attempt == 2:
                    mon.ERRORS.labels(kind="store").inc()
                    raise
                logger.info("batch collided with another writer ({}); retrying", type(e).__name__)
                self._adopt_existing(todo)
        for outcome in outcomes:
            self._count(outcome)
        with mon.stage("store"):
            self._write_index(rows)

    def _adopt_existing(self, todo: list[_Prepared]) -> None:
        """Point photos that another process has just added at their catalog rows."""
        for item in todo:
            if item.sha is not None and item.existing_id is None:
                existing = self.wb.catalog.photo_by_sha(item.sha)
                if existing is not None:
                    item.existing_id = existing.id

    def _count(self, outcome: _Outcome) -> None:
        """Apply one photo's outcome to the report, the metrics and the log."""
        report, item, pack = self.report, outcome.item, self._pack_name or "-"
        log = logger.bind(photo=outcome.photo_id if outcome.photo_id is not None else item.ref.uri)
        mon.PHOTOS_PROCESSED.labels(pack=pack, status=outcome.status).inc()
        if outcome.status == "skipped":
            report.skipped += 1
            return
        report.photos += 1
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

    def _analyze(self, todo: list[_Prepared]) -> dict[int, list[AnalyzedFace]]:
        """Faces of every decodable photo, batched across photos where the pack can."""
        pack = self.wb.pack
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

    def _write_catalog(
        self, todo: list[_Prepared], results: dict[int, list[AnalyzedFace]]
    ) -> tuple[list[tuple[int, int, str, np.ndarray]], list[_Outcome]]:
        """Commit photos and faces in one transaction.

        Returns (face id, photo id, source, vector) of the new faces, for the
        index, and each photo's outcome (applied to the report by the caller,
        once the transaction committed).
        """
        wb, pack_name, run_id = self.wb, self._pack_name, self.report.run_id
        faces_written: list[Face] = []
        placed: list[tuple[_Outcome, Photo]] = []
        outcomes: list[_Outcome] = []
        with wb.catalog.session.begin() as s:
            for idx, item in enumerate(todo):
                ref = item.ref
                if item.stale_id is not None and item.stale_id != item.existing_id:
                    stale = s.get(Photo, item.stale_id)
                    if stale is not None:
                        s.delete(stale)
                # Locked (on PostgreSQL) so two workers given the same photo cannot
                # both add its faces: the second sees the first one's verdict.
                photo = (
                    s.get(Photo, item.existing_id, with_for_update=True)
                    if item.existing_id
                    else None
                )
                if (
                    photo is not None
                    and pack_name is not None
                    and item.error is None
                    and s.get(Analysis, (photo.id, pack_name)) is not None
                ):
                    outcomes.append(_Outcome(item, "skipped", photo.id))
                    continue
                if photo is None:
                    photo = Photo(
                        sha256=item.sha,
                        source=ref.source,
                        origin=ref.origin,
                        uri=ref.uri,
                        meta=dict(ref.metadata),
                    )
                    s.add(photo)
                photo.size_bytes = item.size
                photo.run_id = run_id
                if pack_name is not None:
                    photo.pack = pack_name
                photo.updated_at = utcnow()
                if item.image is not None:
                    photo.width, photo.height = item.image.width, item.image.height
                    photo.format = item.image.format
                faces = results.get(idx, [])
                if item.error is not None:
                    photo.status, photo.error, photo.n_faces = "error", item.error, 0
                    outcome = _Outcome(item, "error")
                elif pack_name is None:
                    photo.status, photo.error, photo.n_faces = "pending", None, 0
                    outcome = _Outcome(item, "pending")
                elif not faces:
                    photo.status, photo.error, photo.n_faces = "no_faces", None, 0
                    outcome = _Outcome(item, "no_faces")
                else:
                    photo.status, photo.error, photo.n_faces = "done", None, len(faces)
                    for f in faces:
                        d = f.detection
                        row = Face(
                            pack=pack_name,
                            x1=d.box[0],
                            y1=d.box[1],
                            x2=d.box[2],
                            y2=d.box[3],
                            landmarks=[round(float(v), 2) for v in d.landmarks.reshape(-1)],
                            score=d.score,
                            embedding=np.asarray(f.embedding, dtype=np.float32).tobytes(),
                            indexed=False,
                        )
                        photo.faces.append(row)
                        faces_written.append(row)
                    outcome = _Outcome(item, "done", n_faces=len(faces))
                if pack_name is not None and item.error is None:
                    if photo.id is None:
                        s.flush()  # assigns the photo id the verdict refers to
                    s.merge(
                        Analysis(
                            photo_id=photo.id,
                            pack=pack_name,
                            n_faces=len(faces),
                            run_id=run_id,
                            analysed_at=utcnow(),
                        )
                    )
                outcomes.append(outcome)
                placed.append((outcome, photo))
            s.flush()  # assigns face and photo ids
            for outcome, photo in placed:
                outcome.photo_id = photo.id
            rows = [(f.id, f.photo.id, f.photo.source, f.vector()) for f in faces_written]
        return rows, outcomes

    def _write_index(self, rows: list[tuple[int, int, str, np.ndarray]]) -> None:
        if not rows:
            return
        ids, photo_ids, sources, vectors = zip(*rows, strict=True)
        self.wb.write_vectors(
            self.wb.collection, ids, photo_ids, sources, np.stack(vectors), self.wb.pack.name
        )


__all__ = ["Ingest", "IngestReport"]
