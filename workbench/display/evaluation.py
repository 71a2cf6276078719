"""Evaluations in a notebook: headline numbers as a table and the ROC as an inline SVG.

Each ``*_html`` takes the result's JSON document (its ``to_dict()``: what is saved
and printed with ``--json``), so this room needs none of the evaluation's types;
each ``*_repr`` is what the result's ``_repr_html_`` returns. Files are named by
their last part only (an LFW folder is not the home's), and a skipped pack's
reason, which may name model folders, stays in the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from workbench.display.html import (
    MUTED,
    Markup,
    Series,
    curve_svg,
    esc,
    frame,
    name_of,
    number,
    percent,
    rendered,
    table,
)

MIN_FAR: Final = 1e-4
"""Left end of a ROC's log false-accept axis (6,000 LFW pairs resolve about 3e-4)."""


def roc_svg(curves: Sequence[tuple[str, Mapping[str, Sequence[float]]]], far: float) -> Markup:
    """ROC curves (``{"fpr", "tpr"}`` each) on a log false-accept axis."""
    positive = [v for _, roc in curves for v in roc["fpr"] if v > 0]
    x0 = max(MIN_FAR, 10 ** math.floor(math.log10(min(positive)))) if positive else MIN_FAR
    return curve_svg(
        [Series(name, roc["fpr"], roc["tpr"]) for name, roc in curves],
        x_label="false accept rate (log)",
        y_label="true accept rate",
        x_range=(x0, 1.0),
        y_range=(0.0, 1.0),
        log_x=True,
        marks=[(far, 0.02, f"FAR {far:g}")] if far >= x0 else [],
        testid="roc",
    )


def _mean_std(d: Mapping[str, float] | None, share: bool = False) -> str:
    if not d:
        return "—"
    if share:
        return f"{percent(d['mean'])} ± {percent(d['std'])}"
    return f"{d['mean']:.4f} ± {d['std']:.4f}"


def lfw_html(doc: Mapping[str, Any]) -> str:
    """HTML of `LfwReport.to_dict()`: accuracy, F1, AUC, TAR@FAR, threshold, no-face
    handling, speed, and the ROC."""
    nf = doc.get("no_face") or {}
    rows = [
        ["accuracy", _mean_std(doc.get("accuracy"), share=True)],
        ["precision", _mean_std(doc.get("precision"))],
        ["recall", _mean_std(doc.get("recall"))],
        ["F1", _mean_std(doc.get("f1"))],
        ["ROC AUC", number(doc.get("roc_auc"))],
        [f"TAR at FAR {doc['tar_at_far']['far']:g}", number(doc["tar_at_far"]["tar"])],
        ["threshold", _mean_std(doc.get("threshold"))],
        ["detection rate", percent(doc.get("detection_rate"))],
        [
            "no face",
            f"{nf.get('images', 0)} images, policy {nf.get('policy', '—')} "
            f"(excluded pairs {nf.get('excluded_pairs', 0)}, forced wrong "
            f"{nf.get('forced_wrong_pairs', 0)})",
        ],
        ["ms per image", number(doc.get("ms_per_image"), 1)],
        ["seconds", number(doc.get("seconds"), 1)],
    ]
    title = (
        f"{doc['pack']} on {doc['protocol']}: accuracy {_mean_std(doc['accuracy'], True)} "
        f"({doc.get('folds', '?')} folds, {number(doc.get('pairs_used', doc.get('pairs')))} pairs)"
    )
    body = _side_by_side(
        table(["measure", "value"], rows, testid="repr-measures"),
        roc_svg([(str(doc["pack"]), doc["roc"])], doc["tar_at_far"]["far"]),
    )
    return frame("evaluation", title, body, pack=doc["pack"], accuracy=doc["accuracy"]["mean"])


def comparison_html(doc: Mapping[str, Any]) -> str:
    """HTML of `Comparison.to_dict()`: one row per pack, their ROCs in one chart."""
    packs = list(doc.get("packs") or [])
    rows = [
        [
            p["pack"],
            _mean_std(p["accuracy"], share=True),
            number(p["lfw"]["f1"]["mean"]),
            number(p["lfw"]["roc_auc"]),
            number(p["lfw"]["tar_at_far"]["tar"]),
            percent(p.get("detection_rate")),
            number(p.get("ms_per_image"), 1),
        ]
        for p in packs
    ]
    far = packs[0]["lfw"]["tar_at_far"]["far"] if packs else 1e-3
    parts = [
        table(
            ["pack", "accuracy", "F1", "ROC AUC", f"TAR@FAR {far:g}", "detection", "ms/image"],
            rows,
            testid="repr-packs",
            row_data=[{"pack": p["pack"]} for p in packs],
        )
        if packs
        else Markup(f'<div style="{MUTED}">No pack could be evaluated.</div>')
    ]
    skipped = [s["pack"] for s in doc.get("skipped") or []]
    if skipped:
        parts.append(
            f'<div style="{MUTED}">skipped: {esc(", ".join(skipped))} (the result\'s '
            "<code>skipped</code> says why)</div>"
        )
    body = _side_by_side(
        Markup("".join(parts)),
        roc_svg([(str(p["pack"]), p["lfw"]["roc"]) for p in packs], far) if packs else "",
    )
    title = (
        f"{len(packs)} pack{'s' if len(packs) != 1 else ''} on {name_of(doc['lfw_dir'])}/"
        f"{name_of(doc['pairs_file'])} ({number(doc.get('seconds'), 1)} s)"
    )
    return frame("comparison", title, body, packs=len(packs))


def celeba_html(doc: Mapping[str, Any], roc: Mapping[str, Sequence[float]] | None) -> str:
    """HTML of `CelebaReport.to_dict()`: retrieval and verification numbers, and the ROC."""
    v = doc["verification"]
    rows = [
        ["images (identities)", f"{number(doc['images'])} ({number(doc['identities'])})"],
        ["no face (excluded)", number(doc["no_face_images"]["count"])],
        ["precision@1", percent(doc["precision_at_1"])],
        ["mAP", percent(doc["map"])],
        ["pairs (same)", f"{number(v['pairs'])} ({number(v['same'])})"],
        [f"threshold ({v['threshold_source']})", number(v["threshold"])],
        ["accuracy", percent(v["accuracy"])],
        ["precision / recall", f"{percent(v['precision'])} / {percent(v['recall'])}"],
        ["F1", number(v["f1"])],
        ["ROC AUC", number(v["roc_auc"])],
    ]
    title = (
        f"{doc['pack']} on CelebA identities ({name_of(doc['identities_file'])}): "
        f"precision@1 {percent(doc['precision_at_1'])}, mAP {percent(doc['map'])}"
    )
    body = _side_by_side(
        table(["measure", "value"], rows, testid="repr-measures"),
        roc_svg([(str(doc["pack"]), roc)], 1e-3) if roc else "",
    )
    return frame("celeba", title, body, pack=doc["pack"], map=doc["map"])


def calibration_html(
    doc: Mapping[str, Any], curve: tuple[Sequence[float], Sequence[float]], cosine_at: float
) -> str:
    """HTML of a `Calibration` (its fields as ``doc``): threshold, slope, where it was
    fitted, and ``curve`` (cosine → similarity %) with the 85 % point at ``cosine_at``."""
    unit = "cosine" if doc["metric"] == "cosine" else "L2 distance"
    rows = [
        ["metric", doc["metric"]],
        [f"threshold ({unit}, reads 85 %)", number(doc["threshold"])],
        ["slope", number(doc["slope"], 2)],
        ["fitted on", doc["protocol"]],
        ["accuracy there", percent(doc.get("accuracy"))],
        ["checked on", doc.get("check_protocol") or "—"],
        ["accuracy there", percent(doc.get("check_accuracy"))],
    ]
    chart = curve_svg(
        [Series(str(doc["pack"]), curve[0], curve[1])],
        x_label="cosine similarity",
        y_label="similarity %",
        x_range=(min(curve[0]), max(curve[0])),
        y_range=(0.0, 100.0),
        marks=[(cosine_at, 85.0, "85 %")],
        testid="calibration-curve",
    )
    state = "" if doc.get("calibrated", True) else " (not calibrated: a generic threshold)"
    title = f"calibration of {doc['pack']}{state}"
    body = _side_by_side(table(["", "value"], rows, testid="repr-calibration"), chart)
    return frame("calibration", title, body, pack=doc["pack"], threshold=doc["threshold"])


def _side_by_side(left: str, right: str) -> Markup:
    return Markup(
        '<div style="display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap">'
        f"<div>{left}</div><div>{right}</div></div>"
    )


# ---- the hooks' bodies -----------------------------------------------------------------
def lfw_repr(report: Any) -> str | None:
    """``LfwReport._repr_html_``."""
    return rendered(lambda: lfw_html(report.to_dict()), "an LFW evaluation")


def comparison_repr(comparison: Any) -> str | None:
    """``Comparison._repr_html_``."""
    return rendered(lambda: comparison_html(comparison.to_dict()), "an LFW comparison")


def celeba_repr(report: Any) -> str | None:
    """``CelebaReport._repr_html_``."""
    return rendered(
        lambda: celeba_html(report.to_dict(), report.roc.thinned()), "a CelebA evaluation"
    )


def calibration_repr(cal: Any) -> str | None:
    """``Calibration._repr_html_``: the similarity % from cosine −0.2 to 1."""

    def render() -> str:
        xs = [-0.2 + 1.2 * i / 120 for i in range(121)]
        doc = {name: getattr(cal, name) for name in cal.__dataclass_fields__}
        return calibration_html(doc, (xs, [float(cal.percent(x)) for x in xs]), cal.cosine_at(85))

    return rendered(render, "a calibration")


__all__ = [
    "calibration_html",
    "calibration_repr",
    "celeba_html",
    "celeba_repr",
    "comparison_html",
    "comparison_repr",
    "lfw_html",
    "lfw_repr",
    "roc_svg",
]
