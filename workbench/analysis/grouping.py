"""Grouping faces into people: a full re-cluster around the people users confirmed
(`recluster`), new faces joining the people there are (`assign_new`), and the run that
chooses between them and records it (`cluster_people`).

The rules (see `workbench.analysis.people`): confirmed people keep their faces, a
rejection is never crossed, two faces of one photo never share a person automatically,
noise faces stay in no person.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from numpy.typing import NDArray
from sqlalchemy import delete, insert, select, update

from workbench.analysis.cluster import NOISE, ClusterParams, KnnGraph, normalise
from workbench.analysis.facemap import neighbour_graph
from workbench.analysis.people import People
from workbench.settings import QualitySettings
from workbench.store.catalog import Catalog
from workbench.store.faces import FaceStore
from workbench.store.models import Face, FacePerson, Person


@dataclass
class ClusterOutcome:
    """What one clustering run did."""

    pack: str
    params: dict[str, Any]
    faces: int
    clusters: int
    noise: int
    people: int
    """People with faces after the run (confirmed ones included)."""
    new_people: int
    assigned: int
    """Faces in a person after the run."""
    seconds: float = 0.0
    kind: str = "full"
    labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    face_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "pack": self.pack,
            "params": self.params,
            "faces": self.faces,
            "clusters": self.clusters,
            "noise": self.noise,
            "people": self.people,
            "new_people": self.new_people,
            "assigned": self.assigned,
            "seconds": round(self.seconds, 3),
        }
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out

    def summary(self) -> str:
        lines = [
            f"{self.kind} clustering of {self.faces} faces ({self.pack}, {self.params['method']}):"
            f" {self.clusters} clusters, {self.noise} noise faces, {self.people} people"
            f" ({self.new_people} new), {self.assigned} faces in people, {self.seconds:.1f} s"
        ]
        if self.metrics:
            m = self.metrics
            lines.append(
                f"against {m['identities']} labelled identities ({m['faces']} labelled faces):"
                f" pairwise P/R/F {m['pairwise_precision']:.3f}/{m['pairwise_recall']:.3f}/"
                f"{m['pairwise_f']:.3f}, BCubed P/R/F {m['bcubed_precision']:.3f}/"
                f"{m['bcubed_recall']:.3f}/{m['bcubed_f']:.3f}, NMI {m['nmi']:.3f}"
            )
        return "\n".join(lines)


def recluster(
    catalog: Catalog,
    pack: str,
    params: ClusterParams,
    *,
    graph: KnnGraph | None = None,
    vectors: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]] | None = None,
    run_id: int | None = None,
    left_out: Sequence[int] = (),
) -> ClusterOutcome:
    """Cluster all faces of ``pack`` and rebuild its unconfirmed people around the confirmed.

    ``vectors`` are the faces to cluster (default: all of the pack's); ``left_out``
    faces (below the quality gate) are recorded as in no person, so that an
    incremental run does not take them for new ones.

    * confirmed faces stay in their person;
    * a cluster holding confirmed faces of one person joins that person; of
      several people, each face joins the person of its most similar
      confirmed face in the cluster;
    * a cluster with no confirmed face becomes the unconfirmed person that
      shared most faces with it before (so ids stay stable), or a new person;
    * rejections and the one-face-per-photo rule are never crossed.
    """
    ids, photos, X = vectors if vectors is not None else catalog.face_vectors(pack)
    A = normalise(X)
    labels = params.make().fit(A, groups=photos, graph=graph).labels_
    people = People(catalog, pack)
    with catalog.session() as s:
        rows = s.execute(
            select(FacePerson.face_id, FacePerson.person_id, FacePerson.confirmed).where(
                FacePerson.pack == pack
            )
        ).all()
        existing_people = set(s.scalars(select(Person.id).where(Person.pack == pack)))
    before = {int(f): (p, bool(c)) for f, p, c in rows}
    rejected = people.rejections()
    pos = {int(f): i for i, f in enumerate(ids.tolist())}
    pinned = {f: p for f, (p, c) in before.items() if c and p is not None and f in pos}

    target: dict[int, int | None] = {}
    new_clusters: list[list[int]] = []
    taken: set[int] = set()
    # Largest clusters claim their old person first: ids stay stable where clusters do.
    members_of: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(labels.tolist()):
        if c != NOISE:
            members_of[c].append(i)
    for c in sorted(members_of, key=lambda c: (-len(members_of[c]), c)):
        members = [int(ids[i]) for i in members_of[c]]
        owners = {pinned[f] for f in members if f in pinned}
        free = [f for f in members if f not in pinned]
        if owners:
            anchors = [f for f in members if f in pinned]
            anchor_vecs = A[[pos[f] for f in anchors]]
            for f in free:
                sims = anchor_vecs @ A[pos[f]]
                for j in np.argsort(-sims):
                    p = pinned[anchors[j]]
                    if (f, p) not in rejected:
                        target[f] = p
                        break
            continue
        votes = Counter(before[f][0] for f in free if f in before and before[f][0] is not None)
        old = next((p for p, _ in votes.most_common() if p not in taken), None)
        if old is not None and old in existing_people:
            taken.add(old)
            for f in free:
                target[f] = old if (f, old) not in rejected else None
        else:
            new_clusters.append(free)

    with catalog.session.begin() as s:
        new_ids: list[int] = []
        for members in new_clusters:
            person = Person(pack=pack)
            s.add(person)
            s.flush()
            new_ids.append(person.id)
            for f in members:
                target[f] = person.id
        # One face per photo and person: pinned faces win, then the face nearest the centre.
        by_person: dict[int, list[int]] = defaultdict(list)
        for f, p in list(target.items()) + list(pinned.items()):
            if p is not None:
                by_person[p].append(f)
        for faces in by_person.values():
            seen: dict[int, int] = {}
            centre = A[[pos[f] for f in faces]].mean(axis=0)
            for f in sorted(faces, key=lambda f: (f not in pinned, -float(A[pos[f]] @ centre), f)):
                ph = int(photos[pos[f]])
                if ph in seen and f not in pinned:
                    target[f] = None
                else:
                    seen.setdefault(ph, f)
        cluster_of = {int(f): int(c) for f, c in zip(ids.tolist(), labels.tolist(), strict=True)}
        s.execute(
            delete(FacePerson).where(FacePerson.pack == pack, FacePerson.confirmed.is_(False))
        )
        s.flush()
        # Bulk statements: a re-cluster of 100k faces is two round trips, not 100k objects.
        pinned_rows = [{"face_id": f, "cluster": cluster_of[f], "run_id": run_id} for f in pinned]
        if pinned_rows:
            s.execute(update(FacePerson), pinned_rows)  # ORM bulk UPDATE by primary key
        free_rows = [
            {
                "face_id": f,
                "pack": pack,
                "cluster": cluster_of[f],
                "person_id": target.get(f),
                "confirmed": False,
                "run_id": run_id,
            }
            for f in ids.tolist()
            if f not in pinned
        ]
        free_rows += [
            {
                "face_id": int(f),
                "pack": pack,
                "cluster": NOISE,
                "person_id": None,
                "confirmed": False,
                "run_id": run_id,
            }
            for f in left_out
            if int(f) not in pinned and int(f) not in pos
        ]
        if free_rows:
            s.execute(insert(FacePerson), free_rows)
        s.flush()
        _drop_empty_people(s, pack)
    n_people = len(people.list(include_hidden=True))
    assigned = sum(1 for f in ids.tolist() if (pinned.get(f) or target.get(f)) is not None)
    n_clusters = int(labels.max(initial=NOISE)) + 1
    return ClusterOutcome(
        pack=pack,
        params=params.to_dict(),
        faces=len(ids),
        clusters=n_clusters,
        noise=int((labels == NOISE).sum()),
        people=n_people,
        new_people=len(new_ids),
        assigned=assigned,
        labels=labels,
        face_ids=ids,
    )


def assign_new(
    store: FaceStore, pack: str, params: ClusterParams, left_out: frozenset[int] = frozenset()
) -> ClusterOutcome:
    """Put faces no clustering has seen into people, without re-clustering the rest.

    A new face joins the person with the most faces within reach
    (similarity ≥ ``params.min_similarity``, found through the vector index),
    if those are at least ``min_samples − 1`` (with the face itself, a core
    face of that person, as in DBSCAN), the person has not rejected it and
    has no face of the same photo yet. The new faces left over are then
    clustered together with the unassigned (noise) faces, and groups among
    them become new people. Existing people keep every face they had.
    """
    # The rule is DBSCAN's whatever method the full runs use (K-Means has no "close enough").
    params = replace(params, method="dbscan")
    catalog = store.catalog
    with catalog.session() as s:
        seen = select(FacePerson.face_id).where(FacePerson.face_id == Face.id).exists()
        new = list(s.scalars(select(Face.id).where(Face.pack == pack, ~seen).order_by(Face.id)))
        loose = list(
            s.scalars(
                select(FacePerson.face_id).where(
                    FacePerson.pack == pack, FacePerson.person_id.is_(None)
                )
            )
        )
    gated = [f for f in new if f in left_out]
    if gated:  # below the quality gate: in no person, and never "new" again
        with catalog.session.begin() as s:
            s.add_all(
                FacePerson(face_id=f, pack=pack, cluster=NOISE, person_id=None) for f in gated
            )
        new = [f for f in new if f not in left_out]
        loose = [f for f in loose if f not in left_out]
    if not new:
        return ClusterOutcome(pack, params.to_dict(), 0, 0, 0, 0, 0, 0, kind="incremental")
    ids, photos, X = catalog.face_vectors(pack, new)
    A = normalise(X)
    k = max(params.n_neighbors, params.samples + 1)
    collection = store.pack_row(pack).collection
    hits = store.searcher(collection).search(collection, A, k, pack=pack)
    neighbour_ids = {h.face_id for per in hits for h in per}
    person_of = People(catalog, pack).person_of(sorted(neighbour_ids))
    rejected = People(catalog, pack).rejections()
    with catalog.session() as s:
        taken_photos = {
            (int(p), int(ph))
            for p, ph in s.execute(
                select(FacePerson.person_id, Face.photo_id)
                .join(Face, Face.id == FacePerson.face_id)
                .where(FacePerson.pack == pack, FacePerson.person_id.is_not(None))
            )
        }
    need = max(params.samples - 1, 1)
    choice: dict[int, tuple[int, float]] = {}
    for f, per in zip(ids.tolist(), hits, strict=True):
        votes: dict[int, list[float]] = defaultdict(list)
        for h in per:
            p = person_of.get(h.face_id)
            if h.face_id != f and p is not None and h.score >= params.min_similarity:
                votes[p].append(h.score)
        ranked = sorted(votes.items(), key=lambda kv: (-len(kv[1]), -max(kv[1]), kv[0]))
        for p, sims in ranked:
            if len(sims) >= need and (f, p) not in rejected:
                choice[f] = (p, max(sims))
                break
    # One face per photo and person: among new faces of one photo the closest wins.
    photo_of = dict(zip(ids.tolist(), photos.tolist(), strict=True))
    joined: dict[int, int] = {}
    for f, (p, _sim) in sorted(choice.items(), key=lambda kv: -kv[1][1]):
        key = (p, photo_of[f])
        if key in taken_photos:
            continue
        taken_photos.add(key)
        joined[f] = p
    with catalog.session.begin() as s:
        for f in ids.tolist():
            s.add(FacePerson(face_id=f, pack=pack, cluster=NOISE, person_id=joined.get(f)))
    # What is left (new and old loose faces) may form people of its own.
    rest = [f for f in ids.tolist() if f not in joined] + [int(f) for f in loose]
    new_people = 0
    if len(rest) >= 2:
        r_ids, r_photos, r_X = catalog.face_vectors(pack, rest)
        labels = params.make().fit(r_X, groups=r_photos).labels_
        with catalog.session.begin() as s:
            for c in range(int(labels.max(initial=NOISE)) + 1):
                person = Person(pack=pack)
                s.add(person)
                s.flush()
                new_people += 1
                s.execute(
                    update(FacePerson)
                    .where(FacePerson.face_id.in_(r_ids[labels == c].tolist()))
                    .values(person_id=person.id)
                )
    n_people = len(People(catalog, pack).list(include_hidden=True))
    return ClusterOutcome(
        pack=pack,
        params=params.to_dict(),
        faces=len(ids),
        clusters=new_people,
        noise=len(ids) - len(joined),
        people=n_people,
        new_people=new_people,
        assigned=len(joined),
        kind="incremental",
    )


def _confirmed(catalog: Catalog, pack: str) -> frozenset[int]:
    """Faces a user put in a person (kept there whatever their quality)."""
    with catalog.session() as s:
        q = select(FacePerson.face_id).where(
            FacePerson.pack == pack, FacePerson.confirmed.is_(True)
        )
        return frozenset(int(f) for f in s.scalars(q))


def _drop_empty_people(s: Any, pack: str) -> None:
    """Unconfirmed people left without faces are gone; confirmed ones stay (a user made them)."""
    has_faces = select(FacePerson.face_id).where(FacePerson.person_id == Person.id).exists()
    s.execute(delete(Person).where(Person.pack == pack, Person.confirmed.is_(False), ~has_faces))


def cluster_people(
    store: FaceStore,
    home: Path,
    pack: str,
    params: ClusterParams,
    *,
    incremental: bool = False,
    gate: QualitySettings | None = None,
) -> ClusterOutcome:
    """Group ``pack``'s faces into people with ``params``; returns what changed.

    Full (default): clusters every face and rebuilds the unconfirmed people
    around the confirmed ones (recorded as a ``cluster`` run; the kNN graph is
    cached under ``home``). ``incremental``: only faces no clustering has seen
    join people (or form new ones); nothing else moves. Faces below the quality
    ``gate`` are left out (in no person) unless a user put them in one.
    """
    started = time.perf_counter()
    run_id = None
    catalog = store.catalog
    left_out = frozenset(catalog.gated_face_ids(pack, gate)) if gate is not None else frozenset()
    if incremental:
        outcome = assign_new(store, pack, params, left_out)
    else:
        run_id = catalog.start_run(pack, [], kind="cluster")
        ids, photos, X = catalog.face_vectors(pack)
        if left_out:
            kept = ~np.isin(ids, np.fromiter(left_out - _confirmed(catalog, pack), np.int64))
            ids, photos, X = ids[kept], photos[kept], X[kept]
        vectors = (ids, photos, X)
        graph = (
            neighbour_graph(home, pack, vectors[0], vectors[2], params.n_neighbors)
            if params.method != "kmeans" and len(vectors[0])
            else None
        )
        outcome = recluster(
            catalog,
            pack,
            params,
            graph=graph,
            vectors=vectors,
            run_id=run_id,
            left_out=sorted(left_out),
        )
    outcome.seconds = time.perf_counter() - started
    if run_id is not None:
        store.catalog.finish_run(run_id, outcome.to_dict())
    logger.info(outcome.summary())
    return outcome


__all__ = ["ClusterOutcome", "assign_new", "cluster_people", "recluster"]
