"""Ablations: every combination of the modalities each labelled set offers, face-only vs fused
first, with accuracy, macro-F1 and calibration; Markdown, CSV, JSON and a plot.

Every prediction scored here is held out: face on FER-2013 PrivateTest (the model was selected
on PublicTest); the temporal head's and the audio model's out-of-fold cross-validation
predictions (shipped with each model), with their temperatures refitted without the scored fold.
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
from mmfer.fusion.calibration import fit_temperature
from mmfer.fusion.late_fusion import MODALITIES, LateFusion
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


def _with_temperatures(fusion: LateFusion, temps: dict[str, float]) -> LateFusion:
    mods = {m: dataclasses.replace(c, temperature=temps.get(m, c.temperature)) for m, c in fusion.modalities.items()}
    return LateFusion(mods, fusion.name)


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


def ckplus_set(temporal_model: str, face_model: str | None) -> LabelledSet:
    """The temporal head's LOSO out-of-fold predictions and, beside them, the face model's clip averages."""
    z = dict(np.load(oof_path(temporal_model), allow_pickle=False))
    card = read_card(resolve_model_dir(temporal_model), kind="video")
    want = card.get("face_model", {}).get("weights_sha256")
    have = weights_digest(resolve_model_dir(face_model))
    ds = LabelledSet("ckplus", f"CK+ clips, {len(z['y'])} clips, leave-one-subject-out ({temporal_model})",
                     z["y"], {"face": z["face_probs"].astype(np.float64), "temporal": z["probs"].astype(np.float64)},
                     z["fold"], refit=("temporal",))
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
    classes = [str(c) for c in z["classes"]]
    y = np.array([EMOTIONS.index(EXTRA_CLASSES.get(classes[i], classes[i])) for i in z["y"]])
    ds = LabelledSet("ravdess", f"RAVDESS speech, {len(y)} clips, actor-disjoint CV ({audio_model}; calm scored "
                     "as neutral)", y, {"audio": fold_audio(z["probs"], classes)}, z["fold"], refit=("audio",))
    ds.skipped.update({"face": "audio-only recordings", "temporal": "audio-only recordings",
                       "scene": "audio-only recordings"})
    return ds


def ablate(fusion: LateFusion, sets: list[LabelledSet]) -> dict[str, Any]:
    rows, calibration = [], []
    for ds in sets:
        present = [m for m in MODALITIES if m in ds.outputs]
        base = None
        for r in range(1, len(present) + 1):
            for subset in itertools.combinations(present, r):
                probs = fuse_held_out(fusion, ds, subset)
                rep = classification_report(ds.y, probs, EMOTIONS)
                row = {"set": ds.name, "modalities": "+".join(subset), "n": int(len(ds.y)),
                       "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"], "ece": rep["ece"],
                       "nll": rep["nll"], "kind": "single" if r == 1 else ("all" if r == len(present) else "pair")}
                if subset == ("face",):
                    base = row
                rows.append(row)
        for row in rows:
            if row["set"] == ds.name:
                row["delta_accuracy_vs_face"] = None if base is None else row["accuracy"] - base["accuracy"]
        for m in present:
            calibration.append({"set": ds.name, "modality": m,
                                "ece_raw": expected_calibration_error(ds.y, ds.outputs[m]),
                                "ece_calibrated": next(r["ece"] for r in rows
                                                       if r["set"] == ds.name and r["modalities"] == m)})
    return {"rows": rows, "calibration": calibration,
            "sets": [{"name": d.name, "description": d.description, "skipped": d.skipped} for d in sets],
            "fusion": fusion.to_dict()}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def write_ablation(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "ablation.json", "csv": out / "ablation.csv", "markdown": out / "ablation.md",
             "plot": out / "ablation.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    keys = ["set", "modalities", "n", "accuracy", "macro_f1", "ece", "nll", "delta_accuracy_vs_face"]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(result["rows"])
    lines = ["# Ablation: face-only vs fused, every combination of modalities", "",
             "Held-out predictions only (see `mmfer/evaluation/ablation.py`). Accuracy, macro-F1 and ECE in %; "
             "Δ is the change in accuracy against face-only on the same samples (negative: fusion hurts).", ""]
    for s in result["sets"]:
        lines += [f"## {s['name']}: {s['description']}", "",
                  "| modalities | n | accuracy | macro-F1 | ECE | NLL | Δ vs face-only |",
                  "|---|---|---|---|---|---|---|"]
        for r in (r for r in result["rows"] if r["set"] == s["name"]):
            d = r.get("delta_accuracy_vs_face")
            delta = "" if d is None else f"{100 * d:+.1f}"
            lines.append(f"| {r['modalities']} | {r['n']} | {_pct(r['accuracy'])} | {_pct(r['macro_f1'])} | "
                         f"{_pct(r['ece'])} | {r['nll']:.3f} | {delta} |")
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
