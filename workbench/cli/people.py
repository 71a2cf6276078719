"""``workbench cluster`` and ``workbench people ...``: grouping faces into people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from workbench.cli._common import emit, open_workbench, say
from workbench.redaction import printable


@click.command("cluster")
@click.option(
    "--method",
    type=click.Choice(["dbscan", "hdbscan", "kmeans"]),
    default=None,
    help="Clustering method [default: the pack's: dbscan for local, hdbscan for dlib].",
)
@click.option(
    "--link-percent",
    type=float,
    default=None,
    help="DBSCAN: link faces at this similarity % [default: the pack's own; 91.4 = a pair "
    "false-match rate of 5e-7].",
)
@click.option(
    "--min-similarity",
    type=float,
    default=None,
    help="DBSCAN: link faces at this cosine similarity (overrides --link-percent).",
)
@click.option(
    "--min-samples",
    type=int,
    default=None,
    help="Faces (itself included) that make a core face [dbscan 2, hdbscan 1].",
)
@click.option("--min-cluster-size", type=int, default=None, help="HDBSCAN: smallest person [2].")
@click.option("--n-clusters", type=int, default=None, help="K-Means: the number of people.")
@click.option(
    "--new",
    "incremental",
    is_flag=True,
    help="Only put faces no clustering has seen into people (nothing else moves).",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Labels CSV (dev-set format: path,identity,...) to score the clustering against.",
)
@click.option(
    "--lfw-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Score against LFW identities (folder names) of the photos ingested from this folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON document.")
@click.pass_context
def cluster_command(
    ctx: click.Context,
    method: str | None,
    link_percent: float | None,
    min_similarity: float | None,
    min_samples: int | None,
    min_cluster_size: int | None,
    n_clusters: int | None,
    incremental: bool,
    labels_csv: str | None,
    lfw_dir: str | None,
    as_json: bool,
) -> None:
    """Group faces into people (full re-cluster keeps names, merges, splits and rejections)."""
    from workbench.evaluation.cluster_labels import face_labels, read_labels_csv, read_lfw_labels

    if incremental and (labels_csv or lfw_dir):
        raise click.UsageError("--labels / --lfw-dir score a full clustering; drop --new")
    with open_workbench(ctx) as wb:
        outcome = wb.cluster(
            method,
            incremental=incremental,
            link_percent=link_percent,
            min_similarity=min_similarity,
            min_samples=min_samples,
            min_cluster_size=min_cluster_size,
            n_clusters=n_clusters,
        )
        for labels, pick in ((labels_csv, "largest"), (lfw_dir, "centre")):
            if labels is None:
                continue
            table = read_labels_csv(Path(labels)) if pick == "largest" else read_lfw_labels(labels)
            truth = face_labels(wb.catalog, wb.pack.name, table, pick)  # type: ignore[arg-type]
            outcome.metrics = truth.report(outcome.face_ids, outcome.labels)
    if as_json:
        emit(outcome.to_dict())
    else:
        say(outcome.summary())


@click.group("people")
def people_group() -> None:
    """List and correct people: name, merge, split, hide, reject faces."""


def _people_action(ctx: click.Context, action: Any, as_json: bool) -> None:
    with open_workbench(ctx) as wb:
        result = action(wb.people)
    items = result if isinstance(result, list) else [result]
    if as_json:
        emit([r.to_dict() if hasattr(r, "to_dict") else r for r in items])
        return
    for r in items:
        if hasattr(r, "label"):
            flags = " (hidden)" if r.hidden else ""
            say(f"{r.id}\t{printable(r.label)}\t{r.faces} faces\t{r.photos} photos{flags}")
        else:
            say(str(r))


_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@people_group.command("list")
@click.option("--all", "include_hidden", is_flag=True, help="Include hidden people.")
@_json
@click.pass_context
def people_list(ctx: click.Context, include_hidden: bool, as_json: bool) -> None:
    """People with their face and photo counts, largest first."""
    _people_action(ctx, lambda p: p.list(include_hidden=include_hidden), as_json)


@people_group.command("name")
@click.argument("person_id", type=int)
@click.argument("name")
@_json
@click.pass_context
def people_name(ctx: click.Context, person_id: int, name: str, as_json: bool) -> None:
    """Name a person (an empty NAME removes the name)."""
    _people_action(ctx, lambda p: p.name(person_id, name), as_json)


@people_group.command("merge")
@click.argument("person_ids", type=int, nargs=-1, required=True)
@click.option("--name", default=None, help="Name of the merged person.")
@_json
@click.pass_context
def people_merge(
    ctx: click.Context, person_ids: tuple[int, ...], name: str | None, as_json: bool
) -> None:
    """Merge people into the first one given."""
    _people_action(ctx, lambda p: p.merge(person_ids, name), as_json)


@people_group.command("split")
@click.argument("person_id", type=int)
@click.option(
    "--faces",
    default=None,
    help="Comma-separated face ids to move out into a new person.",
)
@click.option(
    "--min-similarity",
    type=float,
    default=None,
    help="Re-cluster the person's faces linking only at this cosine (stricter than the run's).",
)
@_json
@click.pass_context
def people_split(
    ctx: click.Context,
    person_id: int,
    faces: str | None,
    min_similarity: float | None,
    as_json: bool,
) -> None:
    """Split a person: move --faces out, or re-cluster it with a stricter --min-similarity."""
    if (faces is None) == (min_similarity is None):
        raise click.UsageError("give exactly one of --faces or --min-similarity")
    try:
        face_ids = [int(f) for f in faces.split(",") if f.strip()] if faces else None
    except ValueError:
        raise click.UsageError(f"--faces takes comma-separated face ids, got {faces!r}") from None

    def action(people: Any) -> Any:
        from workbench.analysis.cluster import ClusterParams

        params = None
        if min_similarity is not None:
            params = ClusterParams(min_similarity=min_similarity)
        return people.split(person_id, face_ids, params)

    _people_action(ctx, action, as_json)


@people_group.command("hide")
@click.argument("person_id", type=int)
@click.option("--unhide", is_flag=True, help="Show the person again.")
@_json
@click.pass_context
def people_hide(ctx: click.Context, person_id: int, unhide: bool, as_json: bool) -> None:
    """Hide a person from lists and maps."""
    _people_action(ctx, lambda p: p.hide(person_id, not unhide), as_json)


@people_group.command("reject")
@click.argument("face_ids", type=int, nargs=-1, required=True)
@click.option(
    "--person", "person_id", type=int, default=None, help="The person [default: the face's]."
)
@_json
@click.pass_context
def people_reject(
    ctx: click.Context, face_ids: tuple[int, ...], person_id: int | None, as_json: bool
) -> None:
    """ "Not this person": take faces out of a person for good."""
    _people_action(
        ctx,
        lambda p: {"rejected": p.reject(face_ids, person_id), "faces": list(face_ids)},
        as_json,
    )


@people_group.command("faces")
@click.argument("person_id", type=int)
@_json
@click.pass_context
def people_faces(ctx: click.Context, person_id: int, as_json: bool) -> None:
    """Face ids of a person."""
    _people_action(ctx, lambda p: {"person": person_id, "faces": p.faces(person_id)}, as_json)


COMMANDS = [cluster_command, people_group]
