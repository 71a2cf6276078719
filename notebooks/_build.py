"""Write the parameterized notebooks of this folder from the cell sources below.

The .ipynb files are generated (no outputs, stable cell ids) so a change is
reviewed here and the notebooks are reproducible:

    python notebooks/_build.py            # rewrite them
    python notebooks/_build.py --check    # exit 1 when a notebook differs from this script

"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Cells are (kind, source, tags); kind is "md" or "code".
Cell = tuple[str, str, tuple[str, ...]]

COMMON_PARAMETERS = """\
home = None  # workbench directory (None: $WORKBENCH_HOME, else ./workbench-data)
pack = None  # model pack name or model directory (None: $WORKBENCH_PACK, else local)"""

MODEL_PARAMETERS = """\
device = None  # auto | cpu | cuda (None: $WORKBENCH_DEVICE, else auto)
batch_size = None  # photos decoded and analysed per batch (None: $WORKBENCH_BATCH_SIZE, else 16)
min_score = None  # minimum detector confidence (None: $WORKBENCH_DETECTION__MIN_SCORE, else 0.5)"""

# `plotly_mimetype` lets JupyterLab draw the figures of an executed notebook
# it does not trust; `notebook` puts plotly.js itself into the first figure's
# output, so the HTML rendering works offline (no CDN).


def setup(
    *,
    pandas: bool = True,
    overrides: bool = False,
    datetime: bool = False,
    imports: str = "",
    reports: bool = True,
) -> str:
    """The first code cell's imports, only those the notebook uses (ruff checks them)."""
    lines = ["import datetime as dt", ""] if datetime else []
    if pandas:
        lines.append("import pandas as pd")
    ours = [
        *(["from workbench.analysis import reports"] if reports else []),
        *(imports.splitlines() if imports else []),
        "from workbench.notebooks import overrides, record"
        if overrides
        else "from workbench.notebooks import record",
    ]
    lines += [
        "import plotly.io as pio",
        "",
        "import workbench",
        *sorted(ours, key=lambda line: line.split(" import ")[0]),
        "",
        'pio.renderers.default = "plotly_mimetype+notebook"',
        "",
    ]
    return "\n".join(lines) + "\n"


OPEN_WITH_MODELS = """\
wb = workbench.open(
    home=home,
    pack=pack,
    **overrides(device=device, batch_size=batch_size, detection__min_score=min_score),
)"""

OPEN = "wb = workbench.open(home=home, pack=pack)"


def how_to_run(name: str, cli: str, papermill: str) -> str:
    return f"""\
Run it from the repository root:

```bash
workbench run-notebook {name} {cli}
papermill notebooks/{name}.ipynb {name}-out.ipynb {papermill}
```

`workbench run-notebook` writes the executed notebook to
`<home>/reports/{name}-<UTC time>.ipynb` (`--output` to choose, `--html` to
render it too, `--json` for what it recorded) and takes the global
`--home` / `--pack`. Parameters left at `None` come from the `WORKBENCH_*`
settings (environment variables)."""


def ingest() -> list[Cell]:
    return [
        (
            "md",
            "# 01 · Ingest: register photos\n\n"
            "Registers the photos of `paths` (files, folders, zip archives, Yandex.Disk links "
            "and folders, VK albums) in the workbench catalog. Each photo is read, hashed and "
            "decoded; an unreadable or hostile file is "
            "recorded as `error` with the reason and the run goes on; a photo already in the "
            "catalog is skipped (a remote one is not even downloaded again). Remote sources "
            "need tokens in `WORKBENCH_VK_TOKEN` / `WORKBENCH_YADISK_TOKEN` (a private "
            "Yandex.Disk, any VK album); run by hand, a missing one is asked for. Registered "
            "photos wait as `pending` for `02_embed`; with "
            "`register_only=False` their faces are detected and embedded at once (what "
            "`workbench ingest` does).\n\n"
            + how_to_run(
                "01_ingest",
                '-p paths \'["photos/", "archive.zip"]\' -p source family',
                "-y '{paths: [photos/, archive.zip]}' -p source family",
            ),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + "\n"
            + MODEL_PARAMETERS
            + """
paths = None  # what to register: a list, or one (files, folders, zip archives,
# yadisk:<public link>, yadisk:/disk/<path>, vk:album/<owner>_<album>, vk:user/<id>, vk:group/<id>)
source = None  # source label stored with the photos (None: local, zip, or the remote spec)
register_only = True  # False: also detect and embed the faces now (else run 02_embed next)
retry_errors = False  # try photos recorded as errors again instead of skipping them
progress = False  # show a progress bar (when run by hand)""",
            ("parameters",),
        ),
        (
            "code",
            setup(overrides=True, imports="from workbench.sources.tokens import ask_missing_tokens")
            + """
if not paths:
    raise workbench.WorkbenchError(
        "01_ingest needs photos: set the parameter paths (files, folders or zip archives), "
        "e.g. -p paths '[\\"photos/\\"]'"
    )
if isinstance(paths, str):
    paths = [paths]
"""
            + OPEN_WITH_MODELS
            + """
# Tokens come from WORKBENCH_VK_TOKEN / WORKBENCH_YADISK_TOKEN; run by hand, a
# missing one is asked for (hidden). They are never printed or stored.
ask_missing_tokens(paths, wb.settings)""",
            (),
        ),
        (
            "code",
            "report = wb.ingest(\n"
            "    paths,\n"
            "    source=source,\n"
            "    progress=progress,\n"
            "    retry_errors=retry_errors,\n"
            "    register_only=register_only,\n"
            ")\n"
            'pd.DataFrame([{**report.counts(), "seconds": round(report.seconds, 2)}])',
            (),
        ),
        ("md", "Photos that could not be registered, with the reason:", ()),
        ("code", 'pd.DataFrame(report.error_details, columns=["photo", "error"])', ()),
        ("md", "## The catalog now", ()),
        ("code", "counts = reports.counts_by_source_status(wb.catalog)\ncounts", ()),
        ("code", "reports.counts_figure(counts)", ()),
        (
            "code",
            """\
numbers = {
    **report.counts(),
    "pending": int(counts.loc[counts.status == "pending", "photos"].sum()),
    "catalog_photos": int(counts.photos.sum()),
    "seconds": round(report.seconds, 3),
}
wb.close()
record(numbers)""",
            (),
        ),
    ]


def embed() -> list[Cell]:
    return [
        (
            "md",
            "# 02 · Embed: detect, align and embed faces\n\n"
            "Runs the model pack over every catalog photo it has not analysed yet (the photos "
            "`01_ingest` registered, and photos another pack analysed), in batches, on CUDA "
            "when `device` allows. Faces and their embeddings go to the catalog and the "
            "vector index; a photo without faces gets status `no_faces`.\n\n"
            + how_to_run("02_embed", "-p batch_size 32", "-p batch_size 32"),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + "\n"
            + MODEL_PARAMETERS
            + """
progress = False  # show a progress bar (when run by hand)""",
            ("parameters",),
        ),
        ("code", setup(overrides=True) + OPEN_WITH_MODELS, ()),
        (
            "code",
            "report = wb.embed(progress=progress)\n"
            "pd.DataFrame(\n"
            "    [\n"
            "        {\n"
            "            **report.counts(),\n"
            '            "seconds": round(report.seconds, 2),\n'
            '            "photos/s": round(report.photos_per_second, 2),\n'
            '            "device": reports.device_used(wb.loaded_pack),\n'
            "        }\n"
            "    ]\n"
            ")",
            (),
        ),
        ("md", "Photos that could not be analysed, with the reason:", ()),
        ("code", 'pd.DataFrame(report.error_details, columns=["photo", "error"])', ()),
        ("md", "## Faces per photo", ()),
        (
            "code",
            "per_photo = reports.faces_per_photo(wb.catalog, wb.pack.name)\nper_photo.describe()",
            (),
        ),
        ("code", "reports.faces_histogram(per_photo)", ()),
        (
            "code",
            """\
numbers = {
    **report.counts(),
    "photos_per_second": round(report.photos_per_second, 3),
    "seconds": round(report.seconds, 3),
    "device": reports.device_used(wb.loaded_pack),
    "pack": wb.pack.name,
}
wb.close()
record(numbers)""",
            (),
        ),
    ]


def index() -> list[Cell]:
    return [
        (
            "md",
            "# 03 · Index: rebuild the vector index from the catalog\n\n"
            "Drops and rebuilds the pack's Milvus collection from the embeddings stored in the "
            "catalog (no model runs), optionally with another `index_type` (HNSW, FLAT, "
            "IVF_FLAT, IVF_SQ8; IVF_PQ on a Milvus server) or `metric` (cosine, l2). Then "
            "checks it: a few stored faces are searched with their own embedding, and each "
            "must find itself first.\n\n"
            + how_to_run("03_index", "-p index_type IVF_FLAT", "-p index_type IVF_FLAT"),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + """
# index_type: HNSW | FLAT | IVF_FLAT | IVF_SQ8 | IVF_PQ (IVF_PQ on a Milvus server only)
index_type = None  # None: $WORKBENCH_STORAGE__INDEX_TYPE, else HNSW
metric = None  # cosine | l2 (None: $WORKBENCH_STORAGE__METRIC, else cosine)
n_check = 20  # stored faces searched against the rebuilt index""",
            ("parameters",),
        ),
        ("code", setup() + OPEN, ()),
        (
            "code",
            """\
vectors = wb.reindex(index_type=index_type, metric=metric, progress=False)
spec = wb.index_spec()  # read back from Milvus
used_index, used_metric = spec.index_type, spec.metric
print(f"{vectors} vectors written to a {used_index} index ({used_metric})")""",
            (),
        ),
        ("md", "## Each face finds itself", ()),
        ("code", "check = reports.index_self_check(wb.store, wb.pack.name, n_check)\ncheck", ()),
        (
            "md",
            "How close is each checked face's nearest *other* face? Pairs right of the "
            "line read as the same person (85 %).",
            (),
        ),
        (
            "code",
            "reports.nearest_figure(check, wb.calibration.threshold)",
            (),
        ),
        ("code", 'stats = wb.stats().to_dict()\npd.DataFrame(stats["packs"])', ()),
        (
            "code",
            """\
numbers = {
    "vectors": vectors,
    "index_type": used_index,
    "metric": used_metric,
    "checked": len(check),
    "self_hit_rate": float(check.hit.mean()) if len(check) else None,
    "agree": stats["agree"],
}
wb.close()
record(numbers)""",
            (),
        ),
    ]


def cluster() -> list[Cell]:
    return [
        (
            "md",
            "# 04 · Cluster: faces into people, and a map of them\n\n"
            "Groups every face of the pack into people (DBSCAN by default; HDBSCAN, or "
            "K-Means when you know the number of people). A full run keeps what users "
            "decided: named, merged, split and hidden people and rejected faces. Then it draws "
            "the faces on a 2-D map (UMAP when umap-learn is installed, else PCA; cached, so "
            "drawing again is instant) and lists the people. With `labels` (a labels CSV in "
            "the dev-set format) it scores the grouping: pairwise and BCubed precision / "
            "recall / F, NMI.\n\n"
            + how_to_run(
                "04_cluster",
                "-p method hdbscan -p projection pca",
                "-p method hdbscan -p projection pca",
            ),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + """
method = None  # dbscan | hdbscan | kmeans (None: the pack's, dbscan for local, hdbscan for dlib)
link_percent = None  # dbscan: link faces at this similarity % (None: the pack's, 91.4 for local)
min_similarity = None  # dbscan: link at this cosine instead (None: from link_percent)
n_clusters = None  # kmeans: the number of people
projection = "auto"  # auto | umap | pca (auto: UMAP when umap-learn is installed)
color_by = "person"  # person | cluster | source
labels = None  # a labels CSV (path,identity,...) to score the clustering against""",
            ("parameters",),
        ),
        (
            "code",
            setup(
                imports="from workbench.evaluation.cluster_labels import "
                "face_labels, read_labels_csv",
                reports=False,
            )
            + OPEN,
            (),
        ),
        (
            "code",
            "outcome = wb.cluster(\n"
            "    method, link_percent=link_percent, min_similarity=min_similarity, "
            "n_clusters=n_clusters\n"
            ")\n"
            "print(outcome.summary())",
            (),
        ),
        (
            "code",
            "fmap = wb.face_map(method=projection)\nfmap.figure(color_by)",
            (),
        ),
        (
            "code",
            "people = pd.DataFrame([p.to_dict() for p in wb.people.list()])\npeople.head(30)",
            (),
        ),
        (
            "code",
            "scores = None\n"
            "if labels is not None:\n"
            "    truth = face_labels(wb.catalog, wb.pack.name, read_labels_csv(labels))\n"
            "    scores = truth.report(outcome.face_ids, outcome.labels)\n"
            'pd.Series(scores, dtype=object) if scores else "no labels given"',
            (),
        ),
        (
            "code",
            """\
numbers = {
    "faces": outcome.faces,
    "photos": int(fmap.table.photo_id.nunique()),
    "sources": int(fmap.table.source.nunique()),
    "projection": fmap.projection,
    "method": outcome.params["method"],
    "clusters": outcome.clusters,
    "noise": outcome.noise,
    "people": outcome.people,
    "assigned": outcome.assigned,
    "metrics": scores,
}
wb.close()
record(numbers)""",
            (),
        ),
    ]


def report() -> list[Cell]:
    hide = ("remove_input",)
    return [
        (
            "md",
            "# Workbench report\n\n"
            "What the workbench holds, what changed since the last report, how fast the runs "
            "went, what failed, and how good search is. Meant to run on a schedule and be "
            "read as HTML (`workbench run-notebook report` renders it next to the executed "
            "notebook); it writes `<home>/reports/last_report.json` at its end, so the next "
            "report counts new faces from there.\n\n"
            + how_to_run("report", "--output report.html", "-p runs_limit 20"),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + """
since = None  # count new faces after this ISO time (None: since the last report; all on the first)
runs_limit = 50  # newest runs shown
errors_limit = 50  # newest errors shown""",
            ("parameters", "remove_input"),
        ),
        (
            "code",
            setup(datetime=True)
            + """wb = workbench.open(home=home, pack=pack)
now = dt.datetime.now(dt.timezone.utc)
since_time = dt.datetime.fromisoformat(since) if since else reports.last_report_time(wb.home)
stats = wb.stats().to_dict()
print(f"workbench {wb.home.resolve()}, pack {wb.pack.name}, at {now:%Y-%m-%d %H:%M} UTC")""",
            hide,
        ),
        ("md", "## Photos per source and status", ()),
        (
            "code",
            'counts = reports.counts_by_source_status(wb.catalog)\ncounts.style.hide(axis="index")',
            hide,
        ),
        ("code", "reports.counts_figure(counts)", hide),
        ("md", "## New faces since the last report", ()),
        (
            "code",
            """\
new = reports.new_faces_since(wb.catalog, since_time)
start = "the first photo" if since_time is None else f"{since_time:%Y-%m-%d %H:%M} UTC"
print(f"{int(new.faces.sum())} new faces in {int(new.photos.sum())} photos since {start}")
new.style.hide(axis="index")""",
            hide,
        ),
        ("md", "## Processing speed per run", ()),
        (
            "code",
            "runs = reports.runs(wb.catalog, limit=runs_limit)\nreports.runs_figure(runs)",
            hide,
        ),
        (
            "code",
            'runs.drop(columns="finished_at").style.hide(axis="index").format(precision=2).format(\n'
            '    {"started_at": "{:%Y-%m-%d %H:%M:%S}"}\n'
            ")",
            hide,
        ),
        ("md", "## Recent errors", ()),
        (
            "code",
            "errors = reports.recent_errors(wb.catalog, limit=errors_limit)\n"
            'errors.style.hide(axis="index").format({"updated_at": "{:%Y-%m-%d %H:%M:%S}"})',
            hide,
        ),
        ("md", "## Search quality", ()),
        (
            "code",
            """\
quality = reports.search_quality(wb.calibration, wb.home)
evaluation = quality.pop("evaluation")
agree = "agree" if stats["agree"] else "DISAGREE (run workbench reindex)"
print(f"catalog and vector index: {agree}")
pd.Series(quality, name="value").to_frame()""",
            hide,
        ),
        (
            "code",
            """\
if evaluation is None:
    print("no evaluation yet (run 05_evaluate)")
else:
    print(f"{evaluation['pairs_file']} evaluated {evaluation['created']}")
    display(reports.evaluation_table(evaluation))
    display(reports.roc_figure(evaluation))""",
            hide,
        ),
        (
            "md",
            "### Strangers to expect in this archive\n\n"
            "A similarity % is a pair false-match rate: searching more faces brings more "
            "strangers above the same threshold. The default is 85 %.",
            (),
        ),
        (
            "code",
            """\
gallery = wb.catalog.count_searchable(wb.pack.name, gate=wb.settings.quality)
print(f"{gallery:,} searchable faces of {wb.pack.name}")
reports.expected_strangers_table(wb.calibration, gallery).style.hide(axis="index").format(
    precision=3
)""",
            hide,
        ),
        (
            "code",
            """\
latest = reports.latest_evaluation(wb.home, "search")
search_eval = None if latest is None else latest[1]
if search_eval is None:
    print("no 1:N search evaluation yet (workbench evaluate search, or 05_evaluate)")
else:
    print(f"1:N search on {search_eval['labels']}, {search_eval['created']}")
    display(reports.search_evaluation_table(search_eval))
    display(reports.strangers_figure(search_eval))""",
            hide,
        ),
        (
            "code",
            """\
numbers = {
    "photos": stats["photos"],
    "faces": stats["faces"],
    "by_source_status": stats["by_source_status"],
    "new_faces": int(new.faces.sum()),
    "since": None if since_time is None else since_time.isoformat(),
    "runs": len(runs),
    "errors": int(counts.loc[counts.status == "error", "photos"].sum()),
    "recent_errors": len(errors),
    "agree": stats["agree"],
    "threshold": quality["threshold"],
    "calibrated": quality["calibrated"],
    "evaluation_file": quality["evaluation_file"],
    "gallery": gallery,
    "expected_strangers_at_85": wb.calibration.expected_strangers(85.0, gallery),
    "search_evaluation": None if latest is None else str(latest[0]),
}
reports.write_last_report(wb.home, now, numbers)
wb.close()
record(numbers)""",
            hide,
        ),
    ]


def evaluate() -> list[Cell]:
    return [
        (
            "md",
            "# 05 · Evaluate: packs side by side on LFW (and CelebA)\n\n"
            "The standard LFW protocol: View 2 `pairs.txt`, 10 folds, each fold's threshold "
            "chosen on the other nine. Every pack that loads here (or the ones in `pack`) "
            "detects, aligns and embeds the raw 250×250 images itself; an image where it "
            "finds no face is handled by the stated `no_face` policy and counted. With "
            "`dev_dir` it also counts detected against labelled faces on the dev set's group "
            "photos; with `celeba_dir` it runs the CelebA identity protocol (retrieval "
            "precision@1 and mAP, verification F1 on seeded pairs). The result is saved under "
            "`<home>/evaluations/`, where the report notebook finds it.\n\n"
            + how_to_run(
                "05_evaluate",
                "-p lfw_dir ../shared/data/lfw -p dev_dir ../shared/data/faces-dev",
                "-p lfw_dir ../shared/data/lfw -p dev_dir ../shared/data/faces-dev",
            ),
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + "\n"
            + MODEL_PARAMETERS
            + """
packs = None  # packs to compare: a list of names (None: `pack` if set, else every pack that loads)
lfw_dir = None  # LFW directory: images/<Name>/<Name>_0001.jpg and pairs.txt
pairs = "pairs.txt"  # the pairs file (View 2: 10 folds)
no_face = "fallback"  # images without a face: fallback | exclude | wrong (always counted)
per_fold = None  # only the first N matched + N mismatched pairs per fold (None: all 6,000)
dev_dir = None  # a dev set with labels.csv: detected vs labelled faces on its group photos
celeba_dir = None  # a CelebA-format folder (img_align_celeba/ + identity_CelebA.txt)
celeba_identities = None  # identity_CelebA.txt (None: in celeba_dir)
celeba_max_images = None  # seeded CelebA subset size (None: all)
seed = 0  # seed of the CelebA subset and pairs
search = False  # 1:N search on all of lfw_dir, ingested into search_home (8 min for `local`)
search_home = None  # where LFW is ingested for it (None: <home>/evaluations/lfw-search-home)
save = True  # keep the result in <home>/evaluations/
progress = False  # show progress bars (when run by hand)""",
            ("parameters",),
        ),
        (
            "code",
            setup(
                overrides=True,
                imports="from workbench.evaluation import "
                "available_packs, compare_packs, evaluate_celeba",
            )
            + """if not lfw_dir:
    raise workbench.WorkbenchError(
        "05_evaluate needs LFW: set the parameter lfw_dir (images/ and pairs.txt), "
        "e.g. -p lfw_dir ../shared/data/lfw"
    )
"""
            + OPEN_WITH_MODELS
            + """
names = [packs] if isinstance(packs, str) else list(packs or ([pack] if pack else []))
loaded, skipped = available_packs(wb.settings, names)
pd.DataFrame(
    [{"pack": p.name, "status": "loaded", "models": p.description} for p in loaded]
    + [{"pack": n, "status": "skipped", "models": why} for n, why in skipped]
)""",
            (),
        ),
        (
            "code",
            """result = compare_packs(
    loaded,
    lfw_dir,
    pairs,
    dev_dir=dev_dir,
    no_face=no_face,
    per_fold=per_fold,
    skipped=skipped,
    progress=progress,
)
saved = result.save(wb.home) if save else None
evaluation = result.to_dict()
for r in result.results:
    print(r.lfw.summary())
reports.evaluation_table(evaluation)""",
            (),
        ),
        ("md", "## ROC per pack", ()),
        ("code", "reports.roc_figure(evaluation)", ()),
        ("code", "reports.accuracy_figure(evaluation)", ()),
        ("md", "Per fold (threshold from the other nine folds, accuracy on this one):", ()),
        (
            "code",
            'pd.DataFrame([{"pack": r.pack, **f} for r in result.results '
            'for f in r.lfw.to_dict()["per_fold"]])',
            (),
        ),
        (
            "md",
            "## 1:N search, as users search an archive\n\n"
            "Every LFW photo of a person with two or more photos searched against all the "
            "others, bystanders included, at the default threshold and at 70–95 % "
            "(`search=True`; else the newest saved evaluation is shown).",
            (),
        ),
        (
            "code",
            """\
if search:
    with workbench.open(
        home=search_home or wb.home / "evaluations" / "lfw-search-home", pack=pack
    ) as swb:
        one_to_n = swb.evaluate_search(lfw_dir, progress=progress)
    print(one_to_n.summary())
    search_saved = one_to_n.save(wb.home) if save else None
    search_eval = one_to_n.to_dict()
else:
    latest = reports.latest_evaluation(wb.home, "search")
    search_saved, search_eval = (None, None) if latest is None else latest
if search_eval is not None:
    display(reports.search_evaluation_table(search_eval))
    display(reports.strangers_figure(search_eval))""",
            (),
        ),
        ("md", "## CelebA identities", ()),
        (
            "code",
            """celeba = {}
for p in loaded if celeba_dir else []:
    c = evaluate_celeba(
        p,
        celeba_dir,
        celeba_identities,
        max_images=celeba_max_images,
        seed=seed,
        home=wb.home,
        progress=progress,
    )
    print(c.summary())
    celeba[p.name] = c.to_dict()
pd.DataFrame(
    [
        {
            "pack": name,
            "images": c["images"],
            "precision@1": c["precision_at_1"],
            "mAP": c["map"],
            "F1": c["verification"]["f1"],
            "ROC AUC": c["verification"]["roc_auc"],
            "no-face images": c["no_face_images"]["count"],
        }
        for name, c in celeba.items()
    ]
)""",
            (),
        ),
        (
            "code",
            """numbers = {
    "packs": {
        r.pack: {
            "accuracy": r.lfw.to_dict()["accuracy"],
            "f1": r.lfw.to_dict()["f1"]["mean"],
            "roc_auc": r.lfw.to_dict()["roc_auc"],
            "tar_at_far": r.lfw.to_dict()["tar_at_far"]["tar"],
            "threshold": r.lfw.to_dict()["threshold"]["mean"],
            "detection_rate": r.lfw.detection_rate,
            "no_face": r.lfw.to_dict()["no_face"],
            "pairs": r.lfw.to_dict()["pairs"],
            "ms_per_image": r.lfw.ms_per_image,
            "group_faces": None if r.groups is None else [r.groups.detected, r.groups.labelled],
        }
        for r in result.results
    },
    "skipped": [name for name, _ in skipped],
    "celeba": {
        name: {
            "precision_at_1": c["precision_at_1"],
            "map": c["map"],
            "f1": c["verification"]["f1"],
        }
        for name, c in celeba.items()
    },
    "saved": None if saved is None else str(saved),
    "seconds": round(result.seconds, 1),
    "search": None
    if search_eval is None
    else {
        "rank1": search_eval["rank1"],
        "default": next(r for r in search_eval["thresholds"] if r["default"]),
        "saved": None if search_saved is None else str(search_saved),
    },
}
wb.close()
record(numbers)""",
            (),
        ),
    ]


def explore() -> list[Cell]:
    return [
        (
            "md",
            "# Explore: the workbench in JupyterLab\n\n"
            "What the workbench holds, looked at the way the dashboards show it: its counts, "
            "the gallery (click a photo for its faces and *Find similar*), a search by a "
            "sample photo with its matches as thumbnails, the people on their face map, and "
            "the monitor. Every widget is the dashboards' own, one call each "
            "(`workbench.widgets.gallery(wb)`, ...), and every result draws itself: "
            "`wb.stats()`, `wb.search(...)`, a person.\n\n"
            "Open it with `workbench lab` (`make lab`), which gives every notebook the "
            "command line's `--home` and `--pack` (the `None`s below), or set them here. "
            "`workbench run-notebook explore` runs it without a browser and records its "
            "numbers. The workbench stays open at the end: the widgets keep using it.",
            (),
        ),
        (
            "code",
            COMMON_PARAMETERS
            + """
sample = None  # a photo to search with (None: the oldest local photo with faces)
top_k = 6  # matches per face of the sample
threshold = None  # calibrated % a match needs (None: $WORKBENCH_SEARCH__THRESHOLD, else 85)
projection = "auto"  # the people map: auto | umap | pca (auto: UMAP when installed)""",
            ("parameters",),
        ),
        (
            "code",
            """import workbench
import workbench.widgets
from workbench.analysis import reports
from workbench.notebooks import record

wb = workbench.open(home=home, pack=pack)
stats = wb.stats()
stats""",
            (),
        ),
        ("md", "## Gallery", ()),
        ("code", "workbench.widgets.gallery(wb)", ()),
        (
            "md",
            "## Search by sample\n\n`wb.search` gives every face of the sample with its "
            "matches, best first; in a notebook it shows them as thumbnails, the matched "
            "face boxed in red. Below it, the search app: upload photos to search with.",
            (),
        ),
        (
            "code",
            """sample = sample or reports.example_photo(wb.catalog, wb.pack.name)
result = wb.search(sample, top_k=top_k, threshold=threshold) if sample else []
result if sample else "no photo with faces to search with yet: ingest some, or set sample\"""",
            (),
        ),
        ("code", "workbench.widgets.search(wb)", ()),
        (
            "md",
            "## People\n\nThe face map coloured by person (select points to see their "
            "faces), the people list and their corrections; *Cluster now* when there are "
            "no people yet. Then the largest person as a result draws itself.",
            (),
        ),
        ("code", "workbench.widgets.people(wb, projection=projection)", ()),
        (
            "code",
            'people = wb.people.list()\npeople[0] if people else "no people yet"',
            (),
        ),
        ("md", "## Monitor", ()),
        ("code", "workbench.widgets.monitor(wb)", ()),
        (
            "code",
            """numbers = {
    "photos": stats.photos,
    "faces": stats.faces,
    "agree": stats.agree,
    "sample_faces": len(result),
    "matches": sum(len(face.matches) for face in result),
    "people": len(people),
}
record(numbers)  # wb stays open: the widgets above keep using it""",
            (),
        ),
    ]


NOTEBOOKS = {
    "01_ingest": ingest,
    "02_embed": embed,
    "03_index": index,
    "04_cluster": cluster,
    "05_evaluate": evaluate,
    "report": report,
    "explore": explore,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    for i, (kind, source, tags) in enumerate(NOTEBOOKS[name]()):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell.id = f"{name.replace('_', '-')}-{i:02d}"  # stable ids: reproducible files
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        text = nbformat.writes(build(name)) + "\n"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/_build.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
