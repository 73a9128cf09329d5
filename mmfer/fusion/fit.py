"""Fit the fusion on paired held-out predictions, and decide by nested subject-disjoint
cross-validation whether the fit may be used at all.

The fit (``method: weights``): one weight per modality and one offset per class,

    s = log prior_ref + b + sum_m w_m * E_m      E_m: modality m's evidence at temperature 1
                                                 (log-likelihood ratio, zero on unknown classes)

minimising the mean negative log-likelihood plus ``reg * (|w - w0|^2 + |b|^2)``, where ``w0`` are the
card's default (dependency-aware) weights, so that a few clips pull the fit only as far as they
support it. Weights stay >= 0 and subsume each branch's temperature. A class the paired data never
show keeps offset 0: its absence from one data set says nothing about users' clips.

Honesty rules, all subject-disjoint (leave-one-subject-out unless ``folds`` is given):

- **cross-validated fit**: every sample is scored by weights fitted without its subject;
- **verdict**: the fit is used only when that CV accuracy is at least the best single branch's on
  the same samples; otherwise the card keeps the rule with ``use: false`` and the fusion falls back
  to that branch;
- **nested score**: the whole procedure (inner CV, verdict, fit) is run inside each outer fold, so
  the reported "fused" accuracy never saw the fold it is scored on. Every fit is logged with the
  subjects it saw and the subjects it scored, and :func:`check_no_leak` asserts they never meet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.emotions import EMOTIONS, NUM_EMOTIONS
from mmfer.fusion.late_fusion import MODALITIES, FittedRule, FusionError, LateFusion, softmax

DEFAULT_REG = 0.05
MAX_FOLDS = 10  # beyond this many subjects, folds are groups of subjects (GroupKFold), not one each


def subject_folds(subjects: np.ndarray, max_folds: int = MAX_FOLDS) -> np.ndarray:
    """A fold id per sample: one fold per subject (leave-one-subject-out), or ``max_folds``
    subject-disjoint folds when there are more subjects than that."""
    uniq, idx = np.unique(subjects, return_inverse=True)
    if len(uniq) <= max_folds:
        return idx
    from sklearn.model_selection import GroupKFold

    fold = np.zeros(len(subjects), np.int64)
    for f, (_, test) in enumerate(GroupKFold(n_splits=max_folds).split(subjects, groups=idx)):
        fold[test] = f
    return fold


@dataclasses.dataclass
class PairedPredictions:
    """Held-out predictions of several branches on the same labelled samples."""

    y: np.ndarray  # (N,) index into EMOTIONS
    outputs: dict[str, np.ndarray]  # modality -> (N, 7) canonical probabilities
    subjects: np.ndarray  # (N,) who is in each sample (folds never split a subject)
    source: str  # what these are, for the card

    def check(self, fusion: LateFusion, modalities: Sequence[str]) -> None:
        """One clear FusionError for each way these cannot be fitted on."""
        for m in modalities:
            if m not in MODALITIES:
                raise FusionError(f"{self.source}: unknown modality {m!r}; expected some of {list(MODALITIES)}")
            if m not in self.outputs:
                raise FusionError(f"{self.source}: no predictions of the {m} branch (have {sorted(self.outputs)})")
            if m not in fusion.modalities:
                raise FusionError(f"{self.source}: the fusion card {fusion.name!r} has no settings for {m}")
        n = len(self.y)
        if n == 0:
            raise FusionError(f"{self.source}: no samples")
        if self.y.min() < 0 or self.y.max() >= NUM_EMOTIONS:
            raise FusionError(f"{self.source}: labels must index the {NUM_EMOTIONS} emotions {list(EMOTIONS)}")
        if len(self.subjects) != n:
            raise FusionError(f"{self.source}: {len(self.subjects)} subjects for {n} labels")
        for m in modalities:
            p = np.asarray(self.outputs[m], np.float64)
            if p.shape != (n, NUM_EMOTIONS):
                raise FusionError(f"{self.source}: {m} predictions have shape {p.shape}, expected ({n}, 7)")
            if not np.isfinite(p).all():
                bad = int((~np.isfinite(p)).any(1).sum())
                raise FusionError(f"{self.source}: {m} predictions contain NaN or infinity ({bad} of {n} rows)")
            known = fusion.modalities[m].known_mask
            unseen = sorted({EMOTIONS[k] for k in np.unique(self.y) if not known[k]})
            if unseen:
                raise FusionError(f"{self.source}: labels {unseen} are classes the {m} branch never saw "
                                  f"({fusion.modalities[m].model or m} knows "
                                  f"{[e for e, k in zip(EMOTIONS, known, strict=True) if k]}): drop those samples")
        if len(np.unique(self.subjects)) < 3:
            raise FusionError(f"{self.source}: {len(np.unique(self.subjects))} subject(s); nested subject-disjoint "
                              "cross-validation needs at least 3 (never split one person's clips across folds)")


def load_predictions(path: str | Path) -> PairedPredictions:
    """A user's paired predictions: an ``.npz`` with ``y`` (emotion names or indices into EMOTIONS),
    ``subject`` and one ``probs_<modality>`` (N, 7) array per branch (canonical class order)."""
    p = Path(path)
    if not p.is_file():
        raise FusionError(f"{p}: no such predictions file")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise FusionError(f"{p}: not a readable .npz of predictions ({exc})") from None
    for key in ("y", "subject"):
        if key not in data:
            raise FusionError(f"{p}: no {key!r} array (have {sorted(data)})")
    y = data["y"]
    if y.dtype.kind in "US":
        unknown = sorted(set(map(str, y)) - set(EMOTIONS))
        if unknown:
            raise FusionError(f"{p}: labels {unknown} are not among {list(EMOTIONS)}")
        y = np.array([EMOTIONS.index(str(v)) for v in y])
    outputs = {k.removeprefix("probs_"): v.astype(np.float64) for k, v in data.items() if k.startswith("probs_")}
    if not outputs:
        raise FusionError(f"{p}: no probs_<modality> arrays (have {sorted(data)})")
    return PairedPredictions(y.astype(np.int64), outputs, data["subject"].astype(str), str(p))


@dataclasses.dataclass
class FitLog:
    """Every fit: the subjects it saw and the subjects its weights then scored."""

    entries: list[tuple[str, frozenset[str], frozenset[str]]] = dataclasses.field(default_factory=list)

    def add(self, stage: str, seen: np.ndarray, scored: np.ndarray) -> None:
        entry = (stage, frozenset(map(str, seen)), frozenset(map(str, scored)))
        if entry[1] & entry[2]:
            raise AssertionError(f"{stage}: a fit saw subjects it is scored on: {sorted(entry[1] & entry[2])}")
        self.entries.append(entry)


def check_no_leak(log: FitLog) -> None:
    for stage, seen, scored in log.entries:
        assert not seen & scored, f"{stage}: fitted on {sorted(seen & scored)}, which it scores"


def _evidence(fusion: LateFusion, data: PairedPredictions, subset: Sequence[str]) -> dict[str, np.ndarray]:
    return {m: fusion.modalities[m].evidence(data.outputs[m], weight=1.0, temperature=1.0) for m in subset}


def fit_weights(evidence: Mapping[str, np.ndarray], y: np.ndarray, log_prior: np.ndarray,
                w0: Mapping[str, float], reg: float = DEFAULT_REG) -> tuple[dict[str, float], np.ndarray]:
    """Weights (>= 0) and per-class offsets minimising the penalised NLL (L-BFGS-B, exact gradient)."""
    from scipy.optimize import minimize  # fitting only

    mods = list(evidence)
    E = np.stack([evidence[m] for m in mods])  # (M, N, 7)
    n = len(y)
    onehot = np.eye(NUM_EMOTIONS)[y]
    start = np.array([w0[m] for m in mods], np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: len(mods)], theta[len(mods):]
        s = log_prior + b + np.tensordot(w, E, axes=1)
        s = s - s.max(1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(1, keepdims=True))
        d = (np.exp(logp) - onehot) / n  # dNLL/ds
        value = -(logp * onehot).sum() / n + reg * (((w - start) ** 2).sum() + (b**2).sum())
        grad = np.concatenate([np.einsum("nk,mnk->m", d, E) + 2 * reg * (w - start), d.sum(0) + 2 * reg * b])
        return float(value), grad

    theta0 = np.concatenate([start, np.zeros(NUM_EMOTIONS)])
    seen = np.bincount(y, minlength=NUM_EMOTIONS) > 0  # no offset for a class the data never show: it stays 0
    bounds = [(0.0, 20.0)] * len(mods) + [(None, None) if k else (0.0, 0.0) for k in seen]
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    return {m: float(v) for m, v in zip(mods, res.x[: len(mods)], strict=True)}, res.x[len(mods):].copy()


def _fitted_probs(evidence: Mapping[str, np.ndarray], log_prior: np.ndarray, weights: Mapping[str, float],
                  offsets: np.ndarray) -> np.ndarray:
    return softmax(log_prior + offsets + sum(weights[m] * e for m, e in evidence.items()))


@dataclasses.dataclass
class _Problem:
    """One subset of modalities on one set of paired predictions, ready to fit on any rows."""

    fusion: LateFusion
    data: PairedPredictions
    subset: tuple[str, ...]
    reg: float

    def __post_init__(self) -> None:
        self.evidence = _evidence(self.fusion, self.data, self.subset)
        default = self.fusion.replace(rules=()).plan(self.subset)  # the dependency-aware defaults
        # shrink towards them: w0 and b = 0 reproduce the default fusion exactly (same reference prior)
        self.w0, self.reference = default.weights, default.reference
        self.log_prior = self.fusion.prior_for(self.reference, self.subset)  # as FusionResult's plan has it
        # each branch alone: its calibrated prediction, untouched by any fit (argmax is temperature-free)
        self.single = {m: self.fusion.fuse_batch({m: self.data.outputs[m]}) for m in self.subset}

    def fit(self, rows: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        ev = {m: e[rows] for m, e in self.evidence.items()}
        return fit_weights(ev, self.data.y[rows], self.log_prior, self.w0, self.reg)

    def predict(self, rows: np.ndarray, weights: Mapping[str, float], offsets: np.ndarray) -> np.ndarray:
        return _fitted_probs({m: e[rows] for m, e in self.evidence.items()}, self.log_prior, weights, offsets)

    def cv_fused(self, rows: np.ndarray, log: FitLog, stage: str) -> np.ndarray:
        """Probabilities for ``rows``, each subject's scored by a fit on the other subjects among ``rows``."""
        out = np.zeros((len(rows), NUM_EMOTIONS))
        fold = subject_folds(self.data.subjects[rows])
        for f in np.unique(fold):
            test, train = rows[fold == f], rows[fold != f]
            log.add(stage, self.data.subjects[train], self.data.subjects[test])
            out[fold == f] = self.predict(test, *self.fit(train))
        return out

    def accuracy(self, probs: np.ndarray, rows: np.ndarray) -> float:
        return float((probs.argmax(1) == self.data.y[rows]).mean())

    def best_single(self, rows: np.ndarray) -> tuple[str, dict[str, float]]:
        accs = {m: self.accuracy(p[rows], rows) for m, p in self.single.items()}
        best = max(self.subset, key=lambda m: (accs[m], -self.subset.index(m)))
        return best, accs


def nested_score(problem: _Problem, log: FitLog) -> dict[str, Any]:
    """The whole procedure (inner LOSO CV, the verdict, the fit) inside each outer leave-one-subject-out
    fold: (N, 7) probabilities of what the card would have said on subjects it never saw."""
    data = problem.data
    rows_all = np.arange(len(data.y))
    probs = np.zeros((len(rows_all), NUM_EMOTIONS))
    decisions = []
    fold = subject_folds(data.subjects)
    for f in np.unique(fold):
        test, train = rows_all[fold == f], rows_all[fold != f]
        s = ",".join(sorted(map(str, np.unique(data.subjects[test]))))
        inner = problem.cv_fused(train, log, f"nested inner (outer subject {s})")
        best, accs = problem.best_single(train)
        use = problem.accuracy(inner, train) >= accs[best]
        if use:
            log.add(f"nested outer fit (subject {s})", data.subjects[train], data.subjects[test])
            probs[test] = problem.predict(test, *problem.fit(train))
        else:
            probs[test] = problem.single[best][test]
        decisions.append({"subject": str(s), "n": int(len(test)), "used": "fusion" if use else best})
    return {"probs": probs, "decisions": decisions}


def fit_rule(fusion: LateFusion, data: PairedPredictions, subset: Sequence[str], reg: float = DEFAULT_REG,
             log: FitLog | None = None) -> tuple[FittedRule, dict[str, Any]]:
    """The rule for ``subset`` with its verdict, and the held-out predictions behind it:
    ``{"cv": fused CV probs, "nested": nested probs, "single": {m: probs}, "log": FitLog}``."""
    unknown = [m for m in subset if m not in MODALITIES]
    if unknown:
        raise FusionError(f"{data.source}: unknown modality {unknown[0]!r}; expected some of {list(MODALITIES)}")
    subset = tuple(m for m in MODALITIES if m in subset)
    if len(subset) < 2:
        raise FusionError(f"a fusion is fitted over two or more modalities, got {list(subset)}")
    data.check(fusion, subset)
    log = log if log is not None else FitLog()
    problem = _Problem(fusion, data, subset, reg)
    rows = np.arange(len(data.y))
    cv = problem.cv_fused(rows, log, "cross-validated fit")
    best, accs = problem.best_single(rows)
    fused_acc = problem.accuracy(cv, rows)
    nested = nested_score(problem, log)
    check_no_leak(log)
    use = fused_acc >= accs[best]
    weights, offsets = problem.fit(rows)
    subjects = sorted(map(str, np.unique(data.subjects)))
    verdict = (f"used: the fitted fusion's cross-validated accuracy {100 * fused_acc:.1f}% reaches the best single "
               f"branch ({best}, {100 * accs[best]:.1f}%)" if use else
               f"not used: the fitted fusion's cross-validated accuracy {100 * fused_acc:.1f}% is below the best "
               f"single branch ({best}, {100 * accs[best]:.1f}%), so the fusion falls back to {best}")
    folds = "leave-one-subject-out" if len(subjects) <= MAX_FOLDS else f"{MAX_FOLDS} subject-disjoint folds"
    scores = {"n": int(len(rows)), "subjects": subjects if len(subjects) <= 100 else len(subjects), "folds": folds,
              "fused_cv_accuracy": round(fused_acc, 6),
              "single_accuracy": {m: round(a, 6) for m, a in accs.items()},
              "nested_accuracy": round(problem.accuracy(nested["probs"], rows), 6),
              "nested_decisions": nested["decisions"], "reg": reg, "fits": len(log.entries)}
    rule = FittedRule(subset, weights, tuple(float(v) for v in offsets), use, best, "weights", problem.reference,
                      scores, data.source, verdict)
    return rule, {"cv": cv, "nested": nested["probs"], "single": problem.single, "log": log}


def with_rule(fusion: LateFusion, rule: FittedRule) -> LateFusion:
    """The card with ``rule`` added (replacing any rule for the same modalities)."""
    rules = [r for r in fusion.rules.values() if frozenset(r.modalities) != frozenset(rule.modalities)]
    return fusion.replace(rules=(*rules, rule))
