"""A trainable late-fusion head over per-modality embeddings, additive over modalities.

``logits = bias + sum_m W_m z_m`` where ``z_m = (x_m - mean_m) / std_m`` is modality m's embedding
standardised with training statistics. A missing modality has ``z_m = 0`` and so contributes exactly
zero: the head keeps the late-fusion contract (each modality's term can be read off on its own, and
any subset of modalities can be scored). The weights are a multinomial L2 logistic regression
(scikit-learn) over the concatenated standardised blocks, fitted with *modality dropout* (copies of
the training rows with some blocks zeroed) so the head also predicts well with a modality missing.

Every output is over the 7 canonical :data:`~mmfer.emotions.EMOTIONS`. A class with no training
example cannot be learnt: its bias is ``-inf`` and its weights 0, so its probability is exactly 0
(the card lists ``learnt_classes``).

Saved as ``model.safetensors`` (per modality ``<m>.weight`` (7, D), ``<m>.mean``, ``<m>.std``, and
``bias``) + ``card.json`` (kind ``fusion_head``); loading never unpickles anything.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.core.artifact import read_card, read_tensors
from mmfer.core.errors import ModelLoadError
from mmfer.emotions import EMOTIONS
from mmfer.fusion.late_fusion import softmax

HEAD_KIND = "fusion_head"
HEAD_VERSION = 1
MIN_STD = 1e-6  # a constant embedding dimension is left unscaled rather than divided by ~0
REBUILD = "rebuild it with `mmfer train fusion --config <its config>` (the card's config section)"


class HeadError(ValueError):
    """A fusion head that cannot be built, loaded or applied; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ModalityBlock:
    weight: np.ndarray  # (7, D) float64
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])


@dataclasses.dataclass
class HeadPrediction:
    """One item: probabilities over EMOTIONS and the exact decomposition ``logits = bias + sum(contributions)``."""

    probabilities: np.ndarray  # (7,)
    logits: np.ndarray  # (7,)
    bias: np.ndarray  # (7,)
    contributions: dict[str, np.ndarray]  # every head modality -> (7,) W_m z_m (exactly 0 when absent)
    present: tuple[str, ...]  # the modalities that were given

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict[str, Any]:
        def named(v: np.ndarray) -> dict[str, float | None]:  # -inf (an unlearnt class) -> null in JSON
            return {e: round(float(x), 4) if np.isfinite(x) else None for e, x in zip(EMOTIONS, v, strict=True)}

        return {"emotion": self.emotion, "probabilities": named(self.probabilities), "bias": named(self.bias),
                "contributions": {m: named(c) for m, c in self.contributions.items()},
                "logits": named(self.logits), "modalities": list(self.present)}


def _present(x: np.ndarray) -> np.ndarray:
    return ~np.isnan(x).any(1)


class EmbeddingHead:
    """The fitted head: one :class:`ModalityBlock` per modality and a bias over EMOTIONS."""

    def __init__(self, blocks: Mapping[str, ModalityBlock], bias: np.ndarray, card: dict[str, Any] | None = None):
        if not blocks:
            raise HeadError("a fusion head needs at least one modality")
        self.blocks = dict(blocks)
        self.bias = np.asarray(bias, np.float64)
        self.card: dict[str, Any] = dict(card or {})

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.blocks)

    @property
    def learnt_classes(self) -> tuple[str, ...]:
        return tuple(e for e, b in zip(EMOTIONS, self.bias, strict=True) if np.isfinite(b))

    # -- fitting -----------------------------------------------------------------------------------

    @classmethod
    def fit(cls, embeddings: Mapping[str, np.ndarray], labels: np.ndarray, c: float = 1.0,
            modality_dropout: float = 0.5, dropout_copies: int = 2, max_iter: int = 1000, seed: int = 0
            ) -> EmbeddingHead:
        """Fit on ``embeddings`` (modality -> (N, D), NaN rows where absent) and canonical label indices.

        Standardisation statistics come from the rows where each modality is present. With more than
        one modality, ``dropout_copies`` copies of the rows are added in which each block is zeroed
        with probability ``modality_dropout`` (at least one block kept per row).
        """
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels, np.int64)
        names = [m for m, x in embeddings.items() if _present(np.asarray(x)).any()]
        if not names:
            raise HeadError("no modality has any embedding to fit on")
        if len(np.unique(y)) < 2:
            raise HeadError(f"a head needs at least 2 classes to learn; the training labels hold only "
                            f"{[EMOTIONS[k] for k in np.unique(y)]}")
        stats = {}
        for m in names:
            x = np.asarray(embeddings[m], np.float64)
            if x.ndim != 2 or len(x) != len(y):
                raise HeadError(f"{m}: expected ({len(y)}, D) embeddings, got {x.shape}")
            rows = x[_present(x)]
            std = rows.std(0)
            stats[m] = (rows.mean(0), np.where(std < MIN_STD, 1.0, std))
        z = np.concatenate([_standardise(np.asarray(embeddings[m], np.float64), *stats[m]) for m in names], 1)
        dims = [stats[m][0].shape[0] for m in names]
        edges = np.cumsum([0, *dims])
        zs, ys = [z], [y]
        rng = np.random.default_rng(seed)
        for _ in range(dropout_copies if len(names) > 1 else 0):
            keep = rng.random((len(y), len(names))) >= modality_dropout
            none = ~keep.any(1)
            keep[none, rng.integers(len(names), size=int(none.sum()))] = True
            zc = z.copy()
            for j in range(len(names)):
                zc[~keep[:, j], edges[j] : edges[j + 1]] = 0.0
            zs.append(zc)
            ys.append(y)
        lr = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lr.fit(np.concatenate(zs), np.concatenate(ys))
        coef, intercept = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # sklearn keeps one row for two classes: logits (0, s) give the same softmax
            coef, intercept = np.stack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
        weight = np.zeros((len(EMOTIONS), z.shape[1]))
        bias = np.full(len(EMOTIONS), -np.inf)
        weight[lr.classes_], bias[lr.classes_] = coef, intercept
        blocks = {m: ModalityBlock(weight[:, edges[j] : edges[j + 1]].copy(), *stats[m]) for j, m in enumerate(names)}
        converged = not any("converge" in str(w.message).lower() for w in caught)
        return cls(blocks, bias, {"fit": {"rows": int(len(y)), "augmented_rows": int(sum(map(len, ys))),
                                          "converged": converged}})

    # -- prediction --------------------------------------------------------------------------------

    def decompose(self, embeddings: Mapping[str, np.ndarray | None]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N, 7) logits and each modality's (N, 7) contribution for a batch (modality -> (N, D), NaN rows
        or a missing key / None where absent). ``logits == bias + sum(contributions.values())`` exactly."""
        unknown = sorted(set(embeddings) - set(self.blocks))
        given = [np.asarray(v) for m, v in embeddings.items() if v is not None and m in self.blocks]
        if unknown:
            raise HeadError(f"the head was trained on {list(self.blocks)}, not {unknown}")
        if not given:
            raise HeadError(f"no embedding given (the head reads {list(self.blocks)})")
        n = given[0].shape[0] if given[0].ndim == 2 else 1
        contributions = {}
        for m, b in self.blocks.items():
            x = embeddings.get(m)
            if x is None:
                contributions[m] = np.zeros((n, len(EMOTIONS)))
                continue
            x = np.asarray(x, np.float64).reshape(-1, b.dim) if np.ndim(x) == 1 else np.asarray(x, np.float64)
            if x.shape != (n, b.dim):
                raise HeadError(f"{m}: expected ({n}, {b.dim}) embeddings, got {x.shape} (other encoder weights? "
                                f"see the card's encoders)")
            contributions[m] = _standardise(x, b.mean, b.std) @ b.weight.T  # absent rows: z = 0 -> exactly 0
        logits = self.bias + sum(contributions.values())
        return logits, contributions

    def predict_proba(self, embeddings: Mapping[str, np.ndarray | None]) -> np.ndarray:
        return softmax(self.decompose(embeddings)[0])

    def predict(self, embeddings: Mapping[str, np.ndarray | None]) -> HeadPrediction:
        """One item (modality -> (D,) vector, or None / left out when absent)."""
        one = {m: None if v is None else np.asarray(v).reshape(1, -1) for m, v in embeddings.items()}
        logits, contributions = self.decompose(one)
        present = tuple(m for m in self.blocks if one.get(m) is not None and _present(one[m]).all())
        return HeadPrediction(softmax(logits[0]), logits[0], self.bias.copy(),
                              {m: c[0] for m, c in contributions.items()}, present)

    # -- files -------------------------------------------------------------------------------------

    def save(self, out_dir: str | Path, card: Mapping[str, Any] | None = None) -> Path:
        """``model.safetensors`` + ``card.json`` in ``out_dir``; ``card`` adds config, data, CV and verdict."""
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"bias": self.bias}
        for m, b in self.blocks.items():
            tensors.update({f"{m}.weight": b.weight, f"{m}.mean": b.mean, f"{m}.std": b.std})
        save_file({k: np.ascontiguousarray(v, np.float64) for k, v in tensors.items()}, str(out / "model.safetensors"),
                  metadata={"format": f"mmfer-{HEAD_KIND}"})
        doc = {"card_version": HEAD_VERSION, "kind": HEAD_KIND, **self.card, **(card or {})}  # kind first, for readers
        doc.update({"card_version": HEAD_VERSION, "kind": HEAD_KIND, "classes": list(EMOTIONS),
                    "learnt_classes": list(self.learnt_classes),
                    "modalities": {m: {"dim": b.dim} for m, b in self.blocks.items()},
                    "formula": "logits = bias + sum_m weight_m @ ((x_m - mean_m) / std_m); an absent modality adds 0"})
        (out / "card.json").write_text(json.dumps(doc, indent=2) + "\n")
        self.card = doc
        return out

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingHead:
        """A head folder (or its card.json); HeadError naming the file when it is not a head this version reads."""
        from safetensors.numpy import load_file

        folder = Path(path)
        folder = folder.parent if folder.name in ("card.json", "model.safetensors") else folder
        card_path = folder / "card.json"
        try:
            card = read_card(folder, kind=HEAD_KIND)
        except ModelLoadError as exc:
            raise HeadError(f"{exc}; {REBUILD}") from None
        if card.get("card_version") != HEAD_VERSION:
            raise HeadError(f"{card_path}: fusion head card version {card.get('card_version')!r} is not one this "
                            f"mmfer reads (version {HEAD_VERSION}); {REBUILD}")
        if card.get("classes") != list(EMOTIONS):
            raise HeadError(f"{card_path}: classes {card.get('classes')} are not {list(EMOTIONS)}; {REBUILD}")
        weights = folder / "model.safetensors"
        try:
            t = read_tensors(weights, load_file)
        except ModelLoadError as exc:
            raise HeadError(str(exc)) from None
        try:
            dims = {str(m): int(info["dim"]) for m, info in card["modalities"].items()}
            blocks = {m: ModalityBlock(t[f"{m}.weight"], t[f"{m}.mean"], t[f"{m}.std"]) for m in dims}
            bias = t["bias"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HeadError(f"{folder}: weights and card do not match (missing {exc}); {REBUILD}") from None
        for m, b in blocks.items():
            d = dims[m]
            if b.weight.shape != (len(EMOTIONS), d) or b.mean.shape != (d,) or b.std.shape != (d,):
                raise HeadError(f"{weights}: the {m} tensors do not have the card's size {d}; {REBUILD}")
        if bias.shape != (len(EMOTIONS),):
            raise HeadError(f"{weights}: bias has shape {bias.shape}, expected ({len(EMOTIONS)},)")
        return cls(blocks, bias, card)


def _standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std where the row is present, exactly 0 where it is absent (NaN)."""
    z = (x - mean) / std
    z[~_present(x)] = 0.0
    return z

