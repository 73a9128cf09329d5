"""Ablations: for every labelled set, each single branch, every combination under the card's
default (dependency-aware) rule, and the fitted fusion scored by nested subject-disjoint
cross-validation; 95% bootstrap intervals over clips and an exact McNemar test of each fusion
against the best single branch. The report opens with "face only vs best single vs fused".

Every prediction scored here is held out: face on FER-2013 PrivateTest (the model was selected
on PublicTest); the temporal head's and the audio model's out-of-fold cross-validation
predictions (shipped with each model), with their temperatures refitted without the scored fold;
the fitted fusion is refitted here inside each outer fold (:func:`mmfer.fusion.fit.fit_rule`), never
read from the card's in-sample weights. The card's own verdict is reported beside it.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.core.artifact import read_card, resolve_model_dir, weights_digest
from mmfer.data.fer2013 import load_fer2013
from mmfer.data.ravdess import find_ravdess
from mmfer.emotions import EMOTIONS, EXTRA_CLASSES, audio_label
from mmfer.evaluation.face_eval import face_model_probs
from mmfer.evaluation.metrics import classification_report, expected_calibration_error
from mmfer.evaluation.stats import bootstrap_ci, mcnemar
from mmfer.fusion.calibration import fit_temperature
from mmfer.fusion.fit import DEFAULT_REG, PairedPredictions, fit_rule
from mmfer.fusion.late_fusion import MODALITIES, FusionError, LateFusion
from mmfer.fusion.oof import fold_audio, oof_path

SETS = ("fer2013", "ckplus", "ravdess")


@dataclasses.dataclass
class LabelledSet:
    name: str
    description: str
    y: np.ndarray
    outputs: dict[str, np.ndarray]  # modality -> (N, 7) held-out probabilities
    fold: np.ndarray | None = None  # CV fold of each sample (temperatures of ``refit`` modalities are cross-fitted)
    refit: tuple[str, ...] = ()
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    subjects: np.ndarray | None = None  # who is in each sample (the fitted fusion's folds); None: unknown

    def paired(self, subset: tuple[str, ...]) -> PairedPredictions:
        subjects = self.subjects if self.subjects is not None else np.arange(len(self.y)).astype(str)
        return PairedPredictions(self.y, {m: self.outputs[m] for m in subset}, subjects, self.description)


def _with_temperatures(fusion: LateFusion, temps: dict[str, float]) -> LateFusion:
    mods = {m: dataclasses.replace(c, temperature=temps.get(m, c.temperature)) for m, c in fusion.modalities.items()}
    return fusion.replace(modalities=mods)


def fuse_held_out(fusion: LateFusion, ds: LabelledSet, subset: tuple[str, ...]) -> np.ndarray:
    """Fused (N, 7) probabilities of ``subset``; refit modalities get a temperature fitted on the other folds."""
    outputs = {m: ds.outputs[m] for m in subset}
    refit = [m for m in subset if m in ds.refit]
    if not refit or ds.fold is None:
        return fusion.fuse_batch(outputs)
    out = np.zeros((len(ds.y), len(EMOTIONS)))
    for f in np.unique(ds.fold):
        test, rest = ds.fold == f, ds.fold != f
        temps = {m: fit_temperature(ds.outputs[m][rest], ds.y[rest]) for m in refit}
        out[test] = _with_temperatures(fusion, temps).fuse_batch({m: v[test] for m, v in outputs.items()})
    return out


def _scene_unavailable(pipeline: Any) -> str | None:
    s = pipeline.slot("scene") if pipeline is not None else None
    return "no scene encoder" if s is None else (None if s.available else s.reason)


def fer2013_set(face_model: str | None, data_root: str | None, limit: int | None, pipeline: Any = None,
                **hf: bool) -> LabelledSet:
    """``hf``: local_files_only / trust_remote_code for a transformers face checkpoint."""
    test = load_fer2013("PrivateTest", data_root)
    images, y = (test.images[:limit], test.labels[:limit]) if limit else (test.images, test.labels)
    branch = pipeline.require("face") if pipeline is not None else None
    face, card = face_model_probs(face_model, images, face=branch, **hf)
    ds = LabelledSet("fer2013", f"FER-2013 PrivateTest, {len(y)} faces ({card['name']})", y, {"face": face})
    reason = _scene_unavailable(pipeline)
    if reason is None:
        bgr = [np.repeat(img[:, :, None], 3, axis=2) for img in images]
        ds.outputs["scene"] = np.concatenate([pipeline.scene(bgr[s : s + 256]).details
                                              for s in range(0, len(bgr), 256)])
    else:
        ds.skipped["scene"] = reason
    ds.skipped["temporal"] = ds.skipped["audio"] = "still images"
    return ds


def ckplus_subjects(clips: np.ndarray) -> np.ndarray:
    """``<label>_<subject>_<sequence>.mp4`` -> subject."""
    return np.array([str(c).rsplit("_", 2)[-2] for c in clips])


def ckplus_set(temporal_model: str, face_model: str | None) -> LabelledSet:
    """The temporal head's LOSO out-of-fold predictions and, beside them, the face model's clip averages."""
    z = dict(np.load(oof_path(temporal_model), allow_pickle=False))
    card = read_card(resolve_model_dir(temporal_model), kind="video")
    want = card.get("face_model", {}).get("weights_sha256")
    have = weights_digest(resolve_model_dir(face_model))
    ds = LabelledSet("ckplus", f"CK+ clips, {len(z['y'])} clips, leave-one-subject-out ({temporal_model})",
                     z["y"], {"face": z["face_probs"].astype(np.float64), "temporal": z["probs"].astype(np.float64)},
                     z["fold"], refit=("temporal",), subjects=ckplus_subjects(z["clips"]))
    if want and want != have:
        raise ValueError(f"{temporal_model}'s out-of-fold predictions were made with other face weights ({want}, "
                         f"now {have}): re-run scripts/ship_video_model.py")
    ds.skipped["audio"] = "the CK+ clips are silent"
    ds.skipped["scene"] = "CK+ is filmed against a plain studio background (no scene to read)"
    return ds


def ravdess_recordings_set(pipeline: Any, data_root: str | None, limit: int | None = None) -> LabelledSet:
    """A ready (transformers) audio classifier scored on RAVDESS speech as it is: no fold of ours held
    anything out, so the description warns that the checkpoint may have been trained on RAVDESS."""
    items = find_ravdess(data_root, channel="speech")[:limit]  # limit None: all
    y, probs = [], []
    for it in items:
        out = pipeline.audio(it.path)
        if out.probs is None:
            continue
        label = audio_label(it.label, "ravdess")
        y.append(EMOTIONS.index(EXTRA_CLASSES.get(label, label)))
        probs.append(out.probs)
    name = pipeline.require("audio").name
    ds = LabelledSet("ravdess", f"RAVDESS speech, {len(y)} clips, scored as-is by {name} (a transformers "
                     "checkpoint: its training data are not ours to hold out, it may include RAVDESS; calm scored "
                     "as neutral)", np.array(y), {"audio": np.array(probs, np.float64)})
    ds.skipped.update({"face": "audio-only recordings", "temporal": "audio-only recordings",
                       "scene": "audio-only recordings"})
    return ds


def ravdess_set(audio_model: str) -> LabelledSet:
    z = dict(np.load(oof_path(audio_model), allow_pickle=False))
    if "corpus" in z:  # a model cross-validated on several corpora: its RAVDESS clips
        keep = z["corpus"] == "ravdess"
        z.update({k: z[k][keep] for k in ("y", "probs", "fold", "corpus")})
    classes = [str(c) for c in z["classes"]]
    y = np.array([EMOTIONS.index(EXTRA_CLASSES.get(classes[i], classes[i])) for i in z["y"]])
    ds = LabelledSet("ravdess", f"RAVDESS speech, {len(y)} clips, actor-disjoint CV ({audio_model}; calm scored "
                     "as neutral)", y, {"audio": fold_audio(z["probs"], classes)}, z["fold"], refit=("audio",),
                     subjects=z["fold"].astype(str))
    ds.skipped.update({"face": "audio-only recordings", "temporal": "audio-only recordings",
                       "scene": "audio-only recordings"})
    return ds


def _row(ds: LabelledSet, name: str, kind: str, probs: np.ndarray) -> dict[str, Any]:
    rep = classification_report(ds.y, probs, EMOTIONS)
    correct = probs.argmax(1) == ds.y
    lo, hi = bootstrap_ci(correct)
    return {"set": ds.name, "modalities": name, "kind": kind, "n": int(len(ds.y)), "accuracy": rep["accuracy"],
            "ci_low": lo, "ci_high": hi, "macro_f1": rep["macro_f1"], "ece": rep["ece"], "nll": rep["nll"],
            "_correct": correct}


def _counted(modality: str, mask: np.ndarray | None) -> str:
    if mask is None:
        return modality
    return f"{modality} on {', '.join(e for e, k in zip(EMOTIONS, mask, strict=True) if k)}"


def _fitted_rows(fusion: LateFusion, ds: LabelledSet, subset: tuple[str, ...]) -> tuple[dict[str, Any] | None, str]:
    """The fitted fusion of ``subset`` scored by nested CV (or None and why it cannot be fitted here)."""
    card_rule = fusion.rule_for(subset)
    reg = float((card_rule.scores if card_rule else {}).get("reg", DEFAULT_REG))
    try:
        rule, held = fit_rule(fusion.replace(rules=()), ds.paired(subset), subset, reg=reg)
    except FusionError as exc:
        return None, str(exc).split(": ", 1)[-1]
    row = _row(ds, "+".join(subset) + " fitted", "fitted (nested CV)", held["nested"])
    row["verdict"] = rule.verdict
    row["weights"] = {m: round(w, 3) for m, w in rule.weights.items()}
    row["card"] = None if card_rule is None else {"use": card_rule.use, "verdict": card_rule.verdict,
                                                  "data": card_rule.data}
    return row, ""


def ablate(fusion: LateFusion, sets: list[LabelledSet]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    calibration, headline = [], []
    default = fusion.replace(rules=())  # combinations as the card combines them without a fitted rule
    for ds in sets:
        present = tuple(m for m in MODALITIES if m in ds.outputs)
        mine = []
        for r in range(1, len(present) + 1):
            for subset in itertools.combinations(present, r):
                plan = default.plan(subset)
                kind = "single" if r == 1 else "default"
                row = _row(ds, "+".join(subset), kind, fuse_held_out(default, ds, subset))
                if r > 1:
                    row["counted"] = [_counted(m, plan.masks.get(m)) for m in subset if plan.weights[m] > 0]
                mine.append(row)
        fitted: dict[tuple[str, ...], dict[str, Any]] = {}
        for r in range(2, len(present) + 1):
            for subset in itertools.combinations(present, r):
                row, why = _fitted_rows(fusion, ds, subset)
                if row is None:
                    ds.skipped["+".join(subset) + " fitted"] = why
                else:
                    fitted[subset] = row
                    mine.append(row)
        singles = [r for r in mine if r["kind"] == "single"]
        best = max(singles, key=lambda r: r["accuracy"])
        face = next((r for r in singles if r["modalities"] == "face"), None)
        for row in mine:
            row["delta_accuracy_vs_face"] = None if face is None else row["accuracy"] - face["accuracy"]
            if row["kind"] != "single":
                row["mcnemar_vs_best_single"] = mcnemar(row["_correct"], best["_correct"])
        if len(present) == 1:
            fused = best
        else:
            fused = fitted.get(present) or next(r for r in mine if r["modalities"] == "+".join(present))
        headline.append({"set": ds.name, "n": int(len(ds.y)), "face": _brief(face), "best_single": _brief(best),
                         "fused": _brief(fused), "delta_vs_best_single": fused["accuracy"] - best["accuracy"],
                         "mcnemar": mcnemar(fused["_correct"], best["_correct"])})
        rows += mine
        for m in present:
            calibration.append({"set": ds.name, "modality": m,
                                "ece_raw": expected_calibration_error(ds.y, ds.outputs[m]),
                                "ece_calibrated": next(r["ece"] for r in mine if r["modalities"] == m)})
    for row in rows:
        row.pop("_correct")
    return {"headline": headline, "rows": rows, "calibration": calibration,
            "sets": [{"name": d.name, "description": d.description, "skipped": d.skipped} for d in sets],
            "fusion": fusion.to_dict()}


def _brief(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"modalities": row["modalities"], "accuracy": row["accuracy"], "ci": [row["ci_low"], row["ci_high"]]}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def _acc_ci(b: dict[str, Any] | None) -> str:
    if b is None:
        return "—"
    return f"{_pct(b['accuracy'])} [{_pct(b['ci'][0])}, {_pct(b['ci'][1])}]"


def write_ablation(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "ablation.json", "csv": out / "ablation.csv", "markdown": out / "ablation.md",
             "plot": out / "ablation.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    keys = ["set", "modalities", "kind", "n", "accuracy", "ci_low", "ci_high", "macro_f1", "ece", "nll",
            "delta_accuracy_vs_face"]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(result["rows"])
    lines = ["# Ablation: face only vs best single branch vs fused", "",
             "Held-out predictions only (see `mmfer/evaluation/ablation.py`). Accuracy in % with a 95% bootstrap "
             "interval over samples; p: exact McNemar test of the fused answer against the best single branch on "
             "the same samples. *fused* is what the fusion does with every branch the set offers: the fitted "
             "fusion scored by nested subject-disjoint cross-validation where it can be fitted, the card's default "
             "(dependency-aware) rule otherwise, and the branch itself on single-branch sets.", "",
             "| set | n | face only | best single | fused | Δ fused − best | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    for h in result["headline"]:
        best, fused = h["best_single"], h["fused"]
        lines.append(f"| {h['set']} | {h['n']} | {_acc_ci(h['face'])} | {best['modalities']} {_acc_ci(best)} | "
                     f"{fused['modalities']} {_acc_ci(fused)} | {100 * h['delta_vs_best_single']:+.1f} | "
                     f"{h['mcnemar']['p']:.3g} |")
    lines += ["", "Per set, every branch and combination (*default*: the card's rule without a fitted weight, where "
              "branches that share evidence count once; *fitted*: nested CV). Accuracy, macro-F1 and ECE in %; "
              "Δ is the change in accuracy against face-only on the same samples.", ""]
    for s in result["sets"]:
        lines += [f"## {s['name']}: {s['description']}", "",
                  "| modalities | kind | n | accuracy [95% CI] | macro-F1 | ECE | NLL | Δ vs face-only | "
                  "McNemar p vs best single |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in result["rows"] if r["set"] == s["name"]):
            d = r.get("delta_accuracy_vs_face")
            delta = "" if d is None else f"{100 * d:+.1f}"
            mc = r.get("mcnemar_vs_best_single")
            p = "" if mc is None else f"{mc['p']:.3g}"
            name = r["modalities"] + (f" (counts {'; '.join(r['counted'])})" if r.get("counted") else "")
            lines.append(f"| {name} | {r['kind']} | {r['n']} | {_pct(r['accuracy'])} [{_pct(r['ci_low'])}, "
                         f"{_pct(r['ci_high'])}] | {_pct(r['macro_f1'])} | {_pct(r['ece'])} | {r['nll']:.3f} | "
                         f"{delta} | {p} |")
        for r in (r for r in result["rows"] if r["set"] == s["name"] and r["kind"].startswith("fitted")):
            name = r["modalities"].removesuffix(" fitted")
            lines += ["", f"Fitted {name}: weights {r['weights']}; on all of this set: {r['verdict']}."]
            if r.get("card"):
                lines.append(f"The card in use: {'used' if r['card']['use'] else 'not used'} "
                             f"(fitted on {r['card']['data']}).")
        cal = [c for c in result["calibration"] if c["set"] == s["name"]]
        lines += ["", "Calibration (ECE %, raw branch output -> after its temperature): " + "; ".join(
            f"{c['modality']} {_pct(c['ece_raw'])} -> {_pct(c['ece_calibrated'])}" for c in cal)]
        if s["skipped"]:
            lines += ["", "Not in this set: " + "; ".join(f"{m}: {why}" for m, why in s["skipped"].items())]
        lines.append("")
    paths["markdown"].write_text("\n".join(lines) + "\n")
    _plot(result, paths["plot"])
    return paths


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s["name"] for s in result["sets"]]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.8), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        rows = [r for r in result["rows"] if r["set"] == name]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [100 * r["accuracy"] for r in rows], 0.4, label="accuracy")
        ax.bar(x + 0.2, [100 * r["macro_f1"] for r in rows], 0.4, label="macro-F1")
        ax.set_xticks(x, [r["modalities"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("%")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
