"""What the demo draws: boxes on faces, emotion bars, per-modality contributions, pitch and energy.

Figures are made with matplotlib's object API (:class:`matplotlib.figure.Figure`), never pyplot:
pyplot's figure registry is process-wide and not thread-safe, and the demo draws for several
requests at once. Nothing here selects a backend (``Figure.savefig`` renders with Agg by itself).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from matplotlib.figure import Figure

from mmfer.emotions import EMOTIONS

# One colour per emotion (BGR for OpenCV; matplotlib gets the RGB version).
COLOURS_BGR = {"angry": (40, 40, 220), "disgust": (40, 140, 60), "fear": (150, 60, 150), "happy": (30, 190, 240),
               "sad": (200, 120, 40), "surprise": (0, 140, 255), "neutral": (150, 150, 150)}
MODALITY_COLOURS = {"face": "#1f77b4", "temporal": "#9467bd", "audio": "#2ca02c", "scene": "#ff7f0e",
                    "prior": "#7f7f7f"}


def _rgb(e: str) -> tuple[float, float, float]:
    b, g, r = COLOURS_BGR.get(e, (128, 128, 128))
    return r / 255, g / 255, b / 255


def draw_faces(image_bgr: np.ndarray, boxes: list[Any], labels: list[str], emotions: list[str | None]) -> np.ndarray:
    """A copy of the image with each face boxed and labelled (RGB, for display)."""
    img = image_bgr.copy()
    thick = max(2, round(max(img.shape[:2]) / 400))
    for box, text, emo in zip(boxes, labels, emotions, strict=True):
        if box is None:
            continue
        x, y, w, h = (int(v) for v in box)
        colour = COLOURS_BGR.get(emo or "", (255, 255, 255))
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, thick)
        scale = max(0.5, w / 220)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 6 if y - th - 10 > 0 else y + h + th + 6
        cv2.rectangle(img, (x, ty - th - 4), (x + tw + 4, ty + 4), colour, -1)
        cv2.putText(img, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_bars(faces: list[dict[str, Any]], max_faces: int = 10) -> Figure:
    """One small bar chart per face (its own face-branch probabilities)."""
    shown = faces[:max_faces]
    cols = min(5, max(1, len(shown)))
    rows = max(1, int(np.ceil(len(shown) / cols)))
    fig = Figure(figsize=(2.6 * cols, 2.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, shown, strict=False):
        ax.axis("on")
        p = [f["probabilities"].get(e, 0.0) for e in EMOTIONS]
        ax.barh(EMOTIONS, p, color=[_rgb(e) for e in EMOTIONS])
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title(f"face {f['index'] + 1}: {f['emotion']}", fontsize=9)
    fig.tight_layout()
    return fig


def contribution_chart(fused: dict[str, Any]) -> Figure:
    """Left: fused probabilities. Right: each modality's additive term per class (centred over classes),
    which with the prior's sum exactly to the fused scores."""
    fig = Figure(figsize=(10, 3.4))
    a1, a2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    p = [fused["probabilities"][e] for e in EMOTIONS]
    a1.barh(EMOTIONS, p, color=[_rgb(e) for e in EMOTIONS])
    a1.set_xlim(0, 1)
    a1.invert_yaxis()
    a1.set_title(f"fused: {fused['emotion']}")
    terms = dict(fused["contributions"])
    terms["prior"] = fused["prior"]["log_prior"]
    if "offsets" in fused:  # a fitted rule's per-class offsets: part of the exact sum
        terms["offsets"] = fused["offsets"]
    weights, notes = fused.get("weights", {}), fused.get("notes", {})
    n = len(terms)
    y = np.arange(len(EMOTIONS))
    for i, (m, c) in enumerate(terms.items()):
        v = np.array([c[e] for e in EMOTIONS])
        label = m if m not in weights else f"{m} (weight {weights[m]:.2f}{', left out' if weights[m] == 0 else ''})"
        a2.barh(y + (i - (n - 1) / 2) * 0.8 / n, v - v.mean(), 0.8 / n, label=label,
                color=MODALITY_COLOURS.get(m, None), hatch="//" if m in notes else None)
    a2.set_yticks(y, EMOTIONS)
    a2.invert_yaxis()
    a2.axvline(0, color="k", lw=0.8)
    a2.set_title("contribution of each modality (log-odds, centred)")
    a2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def pitch_energy(samples: np.ndarray, title: str = "") -> Figure:
    """F0 (voiced frames) and frame energy over time, from the audio branch's own feature extractor."""
    from mmfer.audio.features import FeatureExtractor

    f = FeatureExtractor()(samples)
    t = np.arange(f.frames) * f.hop_s
    f0 = f.f0_hz.numpy().astype(float)
    f0[~f.voiced.numpy()] = np.nan
    fig = Figure(figsize=(9, 3.8))
    a1, a2 = fig.subplots(2, 1, sharex=True)
    a1.plot(t, f0, ".", ms=2, color="#d62728")
    a1.set_ylabel("pitch (Hz)")
    a1.set_title(title or "pitch and energy")
    a2.plot(t, f.rms_db.numpy(), color="#1f77b4", lw=1)
    a2.set_ylabel("energy (dB)")
    a2.set_xlabel("time (s)")
    fig.tight_layout()
    return fig
