"""People: clusters of faces that users name, merge, split, hide and correct.

Clustering proposes; users decide. A person a user acted on is *confirmed*
and its faces are pinned: a full re-cluster re-groups every other face
around the pinned ones, so names, merges, splits and hidden people survive
it. "Not this person" is remembered as a rejection that no automatic step
crosses. Two faces of one photo never end up in one person automatically.

All of it is per pack: people live in one embedding space.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update

from workbench.analysis.cluster import NOISE, ClusterParams, normalise
from workbench.errors import NotFoundError, WorkbenchError
from workbench.store.catalog import Catalog
from workbench.store.models import Face, FacePerson, Person, Rejection


class CoverPictures(Protocol):
    """Gives a person's cover face as JPEG bytes (`workbench.analysis.pictures.Pictures`)."""

    def cover(self, person_id: int) -> bytes: ...


@dataclass(frozen=True)
class PersonInfo:
    id: int
    name: str | None
    faces: int
    photos: int
    hidden: bool
    confirmed: bool
    pictures: CoverPictures | None = field(default=None, compare=False, repr=False)
    """Where a notebook display gets the cover face from (the listing workbench's)."""

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

    def _repr_html_(self) -> str | None:
        """The cover face and counts, for notebooks (`workbench.display.people`)."""
        from workbench.display.people import person_repr

        return person_repr(self)


class People:
    """The people of one pack in a catalog: queries and the user's corrections."""

    def __init__(self, catalog: Catalog, pack: str, pictures: CoverPictures | None = None) -> None:
        self.catalog = catalog
        self.pack = pack
        self.pictures = pictures
        """Handed to every `PersonInfo`, for its notebook display."""

    # ---- queries -----------------------------------------------------------
    def list(self, include_hidden: bool = False) -> list[PersonInfo]:
        """People with at least one face, largest first."""
        return self._infos(None if include_hidden else False)

    def get(self, person_id: int) -> PersonInfo:
        found = self._infos(None, person_id)
        if not found:
            raise NotFoundError(
                f"no person {person_id} with faces for pack {self.pack!r}; `workbench people"
                " list` shows the people"
            )
        return found[0]

    def _infos(
        self, hidden: bool | None, person_id: int | None = None, ids: Sequence[int] | None = None
    ) -> list[PersonInfo]:
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
        if ids is not None:
            if not ids:
                return []
            q = q.where(Person.id.in_(list(ids)))
        with self.catalog.session() as s:
            return [PersonInfo(*row, pictures=self.pictures) for row in s.execute(q)]

    def cover_face(self, person_id: int) -> int | None:
        """The face that stands for a person: its most confident detection (then the oldest)."""
        with self.catalog.session() as s:
            return s.scalar(
                select(Face.id)
                .join(FacePerson, FacePerson.face_id == Face.id)
                .where(FacePerson.person_id == person_id)
                .order_by(Face.score.desc(), Face.id)
                .limit(1)
            )

    def infos(self, person_ids: Sequence[int]) -> list[PersonInfo]:
        """These people (hidden ones too), in id order; ids without faces are left out."""
        return sorted(
            self._infos(None, ids=sorted({int(i) for i in person_ids})), key=lambda p: p.id
        )

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


__all__ = ["People", "PersonInfo"]
