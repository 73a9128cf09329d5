"""A trainable context classifier on CLIP embeddings: a linear or one-hidden-layer MLP probe.

Fitting is scikit-learn's (L-BFGS logistic regression, the linear probe of the CLIP paper, or
MLPClassifier); the fitted weights are copied into a small torch module, stored as safetensors +
a JSON card (classes, CLIP model, metrics), and loaded without unpickling anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmfer.emotions import EMOTIONS, check_classes


class ProbeError(ValueError):
    """Bad probe data or a probe folder that cannot be loaded."""


class ContextProbe(nn.Module):
    def __init__(self, dim: int, num_classes: int = len(EMOTIONS), hidden: int = 0):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Linear(dim, num_classes) if hidden == 0 else nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb)


def fit_probe(embeddings: np.ndarray, labels: np.ndarray, kind: str = "linear", hidden: int = 256, c: float = 1.0,
              seed: int = 0) -> ContextProbe:
    """Fit on (N, D) embeddings and canonical class indices; every class index is kept in the output layer."""
    x, y = np.asarray(embeddings, np.float32), np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ProbeError(f"need (N, D) embeddings and N labels; got {x.shape} and {y.shape}")
    present = np.unique(y)
    if len(present) < 2:
        raise ProbeError(f"need at least two classes to fit a probe; got {[EMOTIONS[i] for i in present]}")
    if kind == "linear":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)
        layers = [(clf.coef_, clf.intercept_)]
        if len(present) == 2:  # sklearn's binary form: one logit for the second class
            layers = [(np.vstack([-clf.coef_, clf.coef_]) / 2, np.concatenate([-clf.intercept_, clf.intercept_]) / 2)]
        probe = ContextProbe(x.shape[1])
    elif kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1.0 / c * 1e-3, max_iter=500, random_state=seed,
                            early_stopping=False).fit(x, y)
        w2, b2 = clf.coefs_[1].T, clf.intercepts_[1]
        if len(present) == 2:
            w2, b2 = np.vstack([-w2, w2]) / 2, np.concatenate([-b2, b2]) / 2
        layers = [(clf.coefs_[0].T, clf.intercepts_[0]), (w2, b2)]
        probe = ContextProbe(x.shape[1], hidden=hidden)
    else:
        raise ProbeError(f"unknown probe kind {kind!r}; expected linear or mlp")
    linears = [m for m in probe.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        last = linears[-1]
        last.weight.zero_()
        last.bias.fill_(-1e4)  # classes never seen in training are never predicted
        for lin, (w, b) in zip(linears[:-1], layers[:-1], strict=True):
            lin.weight.copy_(torch.from_numpy(np.asarray(w, np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
        w, b = layers[-1]
        idx = torch.from_numpy(clf.classes_.astype(np.int64))
        last.weight[idx] = torch.from_numpy(np.asarray(w, np.float32))
        last.bias[idx] = torch.from_numpy(np.asarray(b, np.float32))
    return probe.eval()


def save_probe(probe: ContextProbe, out_dir: str | Path, clip_model: str, clip_pretrained: str | None,
               metrics: dict[str, Any] | None = None, masked_faces: bool = False) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in probe.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "mmfer-scene-probe"})
    first = next(m for m in probe.modules() if isinstance(m, nn.Linear))
    card = {"kind": "scene-probe", "classes": list(EMOTIONS), "input_dim": first.in_features, "hidden": probe.hidden,
            "clip": {"model": clip_model, "pretrained": clip_pretrained, "faces_masked": masked_faces},
            "metrics": metrics or {}}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


def load_probe(model_dir: str | Path) -> tuple[ContextProbe, dict[str, Any]]:
    d = Path(model_dir)
    try:
        card = json.loads((d / "card.json").read_text())
        if card.get("kind") != "scene-probe":
            raise ProbeError(f"{d / 'card.json'}: not a scene probe card")
        classes = check_classes(card["classes"])
        probe = ContextProbe(int(card["input_dim"]), len(classes), int(card.get("hidden", 0)))
        probe.load_state_dict(load_file(str(d / "model.safetensors")))
    except FileNotFoundError as exc:
        raise ProbeError(f"{d}: missing {Path(exc.filename).name if exc.filename else 'file'}") from None
    except (json.JSONDecodeError, KeyError, ValueError, RuntimeError, OSError) as exc:
        if isinstance(exc, ProbeError):
            raise
        raise ProbeError(f"{d}: not a usable scene probe ({str(exc).splitlines()[0][:200]})") from None
    return probe.eval(), card
