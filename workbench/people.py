"""People: clusters of faces that users name, merge, split, hide and correct.

Clustering proposes; users decide. A person a user acted on is *confirmed*
and its faces are pinned: a full re-cluster re-groups every other face
around the pinned ones, so names, merges, splits and hidden people survive
it. "Not this person" is remembered as a rejection that no automatic step
crosses. Two faces of one photo never end up in one person automatically.

All of it is per pack: people live in one embedding space.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, insert, select, update

from workbench.cluster import NOISE, ClusterParams, KnnGraph, normalise
from workbench.errors import WorkbenchError
from workbench.store.catalog import Catalog, Face, FacePerson, Person, Rejection

if TYPE_CHECKING:
    from workbench.core import Workbench


@dataclass(frozen=True)
class PersonInfo:
    id: int
    name: str | None
    faces: int
    photos: int
    hidden: bool
    confirmed: bool

    @property
    def label(self) -> str:
        return self.name or f"person {self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "faces": self.faces,
            "photos": self.photos,
            "hidden": self.hidden,
            "confirmed": self.confirmed,
        }


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


class People:
    """The people of one pack in a catalog: queries and the user's corrections."""

    def __init__(self, catalog: Catalog, pack: str) -> None:
        self.catalog = catalog
        self.pack = pack

    # ---- queries -----------------------------------------------------------
    def list(self, include_hidden: bool = False) -> list[PersonInfo]:
        """People with at least one face, largest first."""
        return self._infos(None if include_hidden else False)

    def get(self, person_id: int) -> PersonInfo:
        found = self._infos(None, person_id)
        if not found:
            raise WorkbenchError(
                f"no person {person_id} with faces for pack {self.pack!r}; `workbench people"
                " list` shows the people"
            )
        return found[0]

    def _infos(self, hidden: bool | None, person_id: int | None = None) -> list[PersonInfo]:
        q = (
            select(
                Person.id,
                Person.name,
                func.count(FacePerson.face_id),
                func.count(func.distinct(Face.photo_id)),
                Person.hidden,
                Person.confirmed,
            )
            .join(FacePerson, FacePerson.person_id == Person.id)
            .join(Face, Face.id == FacePerson.face_id)
            .where(Person.pack == self.pack)
            .group_by(Person.id)
            .order_by(func.count(FacePerson.face_id).desc(), Person.id)
        )
        if hidden is not None:
            q = q.where(Person.hidden.is_(hidden))
        if person_id is not None:
            q = q.where(Person.id == person_id)
        with self.catalog.session() as s:
            return [PersonInfo(*row) for row in s.execute(q)]

    def faces(self, person_id: int) -> list[int]:
        """Face ids of a person, in id order."""
        self.get(person_id)
        with self.catalog.session() as s:
            return list(
                s.scalars(
                    select(FacePerson.face_id)
                    .where(FacePerson.person_id == person_id)
                    .order_by(FacePerson.face_id)
                )
            )

    def person_of(self, face_ids: Sequence[int]) -> dict[int, int | None]:
        found: dict[int, int | None] = {}
        with self.catalog.session() as s:
            # In parts: an incremental run asks about every neighbour of every new face.
            for cond in self.catalog.id_in(FacePerson.face_id, face_ids):
                rows = s.execute(select(FacePerson.face_id, FacePerson.person_id).where(cond))
                found.update((int(f), p) for f, p in rows)
        return {int(f): found.get(int(f)) for f in face_ids}

    def rejections(self) -> set[tuple[int, int]]:
        with self.catalog.session() as s:
            rows = s.execute(
                select(Rejection.face_id, Rejection.person_id)
                .join(Person, Person.id == Rejection.person_id)
                .where(Person.pack == self.pack)
            )
            return {(int(f), int(p)) for f, p in rows}

    # ---- corrections -------------------------------------------------------
    def name(self, person_id: int, name: str | None) -> PersonInfo:
        """Name (or, with ``None``, un-name) a person; it is confirmed from now on."""
        self._confirm(person_id, name=(name.strip() or None) if name else None)
        return self.get(person_id)

    def hide(self, person_id: int, hidden: bool = True) -> PersonInfo:
        """Hide a person from lists and maps (its faces stay with it); confirms it."""
        self._confirm(person_id, hidden=hidden)
        return self.get(person_id)

    def merge(self, person_ids: Sequence[int], name: str | None = None) -> PersonInfo:
        """Merge people into the first one (named ``name``, else the first name found)."""
        ids = list(dict.fromkeys(int(p) for p in person_ids))
        if len(ids) < 2:
            raise WorkbenchError(f"merging needs two or more people, got {ids}")
        infos = [self.get(p) for p in ids]
        target = ids[0]
        keep_name = name or next((p.name for p in infos if p.name), None)
        with self.catalog.session.begin() as s:
            s.execute(
                update(FacePerson)
                .where(FacePerson.person_id.in_(ids))
                .values(person_id=target, confirmed=True)
            )
            for other in ids[1:]:
                # Faces rejected by a merged person stay rejected by the result.
                for (face_id,) in s.execute(
                    select(Rejection.face_id).where(Rejection.person_id == other)
                ).all():
                    if s.get(Rejection, (face_id, target)) is None:
                        s.add(Rejection(face_id=face_id, person_id=target))
                s.execute(delete(Person).where(Person.id == other))
            s.execute(
                update(Person).where(Person.id == target).values(name=keep_name, confirmed=True)
            )
        self._drop_same_photo(target)
        return self.get(target)

    def move(self, face_ids: Sequence[int], person_id: int | None = None) -> PersonInfo:
        """Move faces into a person (a new one when ``person_id`` is None), confirmed there.

        The people they leave are confirmed too and reject the moved faces,
        so a re-cluster does not pull them back.
        """
        faces = self._own_faces(face_ids)
        old = self.person_of(faces)
        with self.catalog.session.begin() as s:
            if person_id is None:
                person = Person(pack=self.pack, confirmed=True)
                s.add(person)
                s.flush()
                person_id = person.id
            elif s.get(Person, person_id) is None:
                raise WorkbenchError(f"no person {person_id} for pack {self.pack!r}")
            for f in faces:
                src = old[f]
                if src is not None and src != person_id:
                    s.execute(
                        update(FacePerson).where(FacePerson.person_id == src).values(confirmed=True)
                    )
                    s.execute(update(Person).where(Person.id == src).values(confirmed=True))
                    if s.get(Rejection, (f, src)) is None:
                        s.add(Rejection(face_id=f, person_id=src))
                existing = s.get(Rejection, (f, person_id))
                if existing is not None:
                    s.delete(existing)  # the user's latest word wins
                self._set(s, f, person_id, confirmed=True)
            s.execute(update(Person).where(Person.id == person_id).values(confirmed=True))
            s.execute(
                update(FacePerson).where(FacePerson.person_id == person_id).values(confirmed=True)
            )
        self._drop_same_photo(person_id)
        return self.get(person_id)

    def split(
        self,
        person_id: int,
        face_ids: Sequence[int] | None = None,
        params: ClusterParams | None = None,
    ) -> list[PersonInfo]:
        """Split a person: move ``face_ids`` out into a new person, or re-cluster its faces.

        Re-clustering uses ``params`` (stricter ones than the run's are the
        point: e.g. a higher ``min_similarity``); the largest part keeps the
        person, every other cluster becomes a new person, noise faces leave it.
        Returns the people that now hold its faces.
        """
        if face_ids is not None:
            moved = self.move(face_ids, None)
            return [self.get(person_id), moved]
        if params is None:
            raise WorkbenchError("split needs either the faces to move out or clustering params")
        faces = self.faces(person_id)
        ids, photos, X = self.catalog.face_vectors(self.pack, faces)
        labels = params.make().fit(X, groups=photos).labels_
        out = [self.get(person_id)]
        if labels.max(initial=NOISE) < 1 and (labels == NOISE).sum() == 0:
            return out
        # Largest cluster (label 0) stays; the others go to new people.
        for c in range(1, int(labels.max(initial=0)) + 1):
            out.append(self.move(ids[labels == c].tolist(), None))
        noise = ids[labels == NOISE].tolist()
        if noise:
            self.reject(noise, person_id)
        self._confirm(person_id)
        out[0] = self.get(person_id)
        return out

    def reject(self, face_ids: Sequence[int], person_id: int | None = None) -> int:
        """ "Not this person": take faces out of their person and never put them back.

        ``person_id`` defaults to each face's current person. Returns the
        number of faces taken out.
        """
        faces = self._own_faces(face_ids)
        current = self.person_of(faces)
        n = 0
        with self.catalog.session.begin() as s:
            for f in faces:
                target = person_id if person_id is not None else current[f]
                if target is None:
                    continue
                if s.get(Rejection, (f, target)) is None:
                    s.add(Rejection(face_id=f, person_id=target))
                if current[f] == target:
                    self._set(s, f, None, confirmed=False)
                    n += 1
        return n

    # ---- helpers -----------------------------------------------------------
    def _confirm(self, person_id: int, **values: Any) -> None:
        self.get(person_id)
        with self.catalog.session.begin() as s:
            s.execute(update(Person).where(Person.id == person_id).values(confirmed=True, **values))
            s.execute(
                update(FacePerson).where(FacePerson.person_id == person_id).values(confirmed=True)
            )

    def _own_faces(self, face_ids: Iterable[int]) -> list[int]:
        wanted = list(dict.fromkeys(int(f) for f in face_ids))
        found: set[int] = set()
        with self.catalog.session() as s:
            for cond in self.catalog.id_in(Face.id, wanted):
                found.update(s.scalars(select(Face.id).where(cond, Face.pack == self.pack)))
        missing = [f for f in wanted if f not in found]
        if missing:
            raise WorkbenchError(f"faces {missing} are not faces of pack {self.pack!r}")
        return wanted

    def _set(self, s: Any, face_id: int, person_id: int | None, confirmed: bool) -> None:
        row = s.get(FacePerson, face_id)
        if row is None:
            s.add(
                FacePerson(
                    face_id=face_id, pack=self.pack, person_id=person_id, confirmed=confirmed
                )
            )
        else:
            row.person_id, row.confirmed = person_id, confirmed

    def _drop_same_photo(self, person_id: int) -> None:
        """After a user's merge or move: a photo's extra faces in one person leave it.

        The user's explicit faces win over automatic ones; among equals the
        face nearer the person's centre stays.
        """
        faces = self.faces(person_id)
        ids, photos, X = self.catalog.face_vectors(self.pack, faces)
        if len(set(photos.tolist())) == len(photos):
            return
        confirmed = self._confirmed_map(ids.tolist())
        centre = normalise(X).mean(axis=0)
        sims = normalise(X) @ centre
        best: dict[int, tuple[bool, float, int]] = {}
        for f, p, sim in zip(ids.tolist(), photos.tolist(), sims.tolist(), strict=True):
            key = (confirmed[f], sim, f)
            if p not in best or key > best[p]:
                best[p] = key
        keep = {v[2] for v in best.values()}
        drop = [f for f in ids.tolist() if f not in keep]
        with self.catalog.session.begin() as s:
            for f in drop:
                self._set(s, f, None, confirmed=False)

    def _confirmed_map(self, face_ids: list[int]) -> dict[int, bool]:
        found: dict[int, bool] = {}
        with self.catalog.session() as s:
            for cond in self.catalog.id_in(FacePerson.face_id, face_ids):
                rows = s.execute(select(FacePerson.face_id, FacePerson.confirmed).where(cond))
                found.update((int(f), bool(c)) for f, c in rows)
        return {f: found.get(f, False) for f in face_ids}


# ---- clustering into people ---------------------------------------------------------
def recluster(
    catalog: Catalog,
    pack: str,
    params: ClusterParams,
    *,
    graph: KnnGraph | None = None,
    vectors: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]] | None = None,
    run_id: int | None = None,
) -> ClusterOutcome:
    """Cluster all faces of ``pack`` and rebuild its unconfirmed people around the confirmed.

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


def assign_new(wb: Workbench, pack: str, params: ClusterParams) -> ClusterOutcome:
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
    catalog = wb.catalog
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
    if not new:
        return ClusterOutcome(pack, params.to_dict(), 0, 0, 0, 0, 0, 0, kind="incremental")
    ids, photos, X = catalog.face_vectors(pack, new)
    A = normalise(X)
    pack_row = next(p for p in catalog.packs() if p.name == pack)
    k = max(params.n_neighbors, params.samples + 1)
    hits = wb.index.search(pack_row.collection, A, k, pack=pack)
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


def _drop_empty_people(s: Any, pack: str) -> None:
    """Unconfirmed people left without faces are gone; confirmed ones stay (a user made them)."""
    has_faces = select(FacePerson.face_id).where(FacePerson.person_id == Person.id).exists()
    s.execute(delete(Person).where(Person.pack == pack, Person.confirmed.is_(False), ~has_faces))


__all__ = ["ClusterOutcome", "People", "PersonInfo", "assign_new", "recluster"]
