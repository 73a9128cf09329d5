"""Late fusion whose fused score is an exact sum of per-modality terms, counting each source of
evidence once.

Every branch gives probabilities over the canonical :data:`~mmfer.emotions.EMOTIONS` (audio folds
calm into neutral first). For a present modality m, on the classes it was trained on (``known``):

    p~_m = temperature-scaled p_m, renormalised on its known classes, floored by a little uniform mass
    c_m,k = w_m * (log p~_m,k - log prior_m,k)      (its evidence: a log-likelihood ratio)
    c_m,k = 0 for classes m never saw                 (no evidence either way)

and the fused score is ``s_k = log prior_ref,k + b_k + sum_m c_m,k``, ``p = softmax(s)``, where
``b`` are per-class offsets (zero unless fitted). Which weights apply depends on which modalities
are present, in this order:

1. **A fitted rule** for exactly that set (``mmfer train fusion``): its weights ``w_m`` and offsets
   ``b``, fitted on paired held-out predictions with nested subject-disjoint cross-validation (its
   weights replace the temperatures, which they subsume). A rule whose cross-validated score did
   not reach the best single branch's is kept with ``use: false``: then only that branch counts.
2. **Shared evidence** otherwise: modalities that read one source (the temporal head reads the face
   CNN's embeddings of the same frames) form a group; when several members are present only the
   first (in the group's order) counts, so the product of experts never counts one source twice.
3. Each modality's own weight ``w_m`` (1 by default).

The reference prior is that of the first counted modality in MODALITIES order, so a lone branch
passes through unchanged (up to its calibration). Left-out modalities keep a zero contribution and
a note saying why. Contributions are exact: ``scores == prior_term + offset + sum(contributions)``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmfer.emotions import EMOTIONS, NUM_EMOTIONS
from mmfer.fusion.calibration import apply_temperature

CARD_VERSION = 2
REBUILD = "rebuild it with `mmfer calibrate` and `mmfer train fusion --config configs/fusion_ckplus.yaml`"

MODALITIES: tuple[str, ...] = ("face", "temporal", "audio", "scene")


class FusionError(ValueError):
    """A fusion config or input that cannot be used."""


def class_prior(counts: Any, smoothing: float = 1.0) -> list[float]:
    """Laplace-smoothed class distribution over EMOTIONS from training counts."""
    c = np.asarray(counts, np.float64)
    if c.shape != (NUM_EMOTIONS,) or (c < 0).any():
        raise FusionError(f"class counts must be {NUM_EMOTIONS} non-negative numbers, got {counts!r}")
    p = (c + smoothing) / (c.sum() + smoothing * NUM_EMOTIONS)
    return [round(float(v), 6) for v in p]


@dataclasses.dataclass
class ModalityCal:
    """How one branch enters the fusion (all of it is data, stored in the fusion card)."""

    temperature: float = 1.0
    weight: float = 1.0
    prior: list[float] | None = None  # its training class distribution over EMOTIONS (None: uniform)
    known: list[bool] | None = None  # the classes it was trained on (None: all)
    floor: float = 1e-3  # uniform mass mixed in so one confident zero cannot veto a class
    calibration: dict[str, Any] | None = None  # how the temperature was fitted (source, n, ECE before/after)
    model: str | None = None  # the branch model these numbers belong to

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise FusionError(f"temperature must be positive, got {self.temperature}")
        if not (self.weight >= 0 and np.isfinite(self.weight)):
            raise FusionError(f"weight must be >= 0, got {self.weight}")
        for name in ("prior", "known"):
            v = getattr(self, name)
            if v is not None and len(v) != NUM_EMOTIONS:
                raise FusionError(f"{name} must list {NUM_EMOTIONS} values (one per {', '.join(EMOTIONS)})")
        if self.prior is not None and (min(self.prior) <= 0 or abs(sum(self.prior) - 1) > 1e-3):
            raise FusionError("prior must be positive and sum to 1 (smooth training counts with class_prior)")
        if self.known is not None and sum(self.known) < 2:
            raise FusionError("a modality must know at least two classes")

    @property
    def known_mask(self) -> np.ndarray:
        return np.ones(NUM_EMOTIONS, bool) if self.known is None else np.asarray(self.known, bool)

    @property
    def log_prior(self) -> np.ndarray:
        p = np.full(NUM_EMOTIONS, 1 / NUM_EMOTIONS) if self.prior is None else np.asarray(self.prior, np.float64)
        return np.log(p)

    def evidence(self, probs: np.ndarray, weight: float | None = None, temperature: float | None = None
                 ) -> np.ndarray:
        """(..., 7) probabilities -> (..., 7) contributions c_m (zero on unknown classes); ``weight`` and
        ``temperature`` override the card's (a fitted rule's weights apply at temperature 1)."""
        p = np.asarray(probs, np.float64)
        if p.shape[-1] != NUM_EMOTIONS or not np.isfinite(p).all() or (p < 0).any():
            raise FusionError(f"expected finite non-negative probabilities over {NUM_EMOTIONS} emotions, "
                              f"got shape {p.shape}")
        k = self.known_mask
        pk = p[..., k]
        total = pk.sum(-1, keepdims=True)
        pk = np.where(total > 0, pk / np.where(total > 0, total, 1), 1 / k.sum())
        pk = apply_temperature(pk, self.temperature if temperature is None else temperature)
        pk = (1 - self.floor) * pk + self.floor / k.sum()
        lp = self.log_prior[k]
        lp = lp - np.log(np.exp(lp).sum())  # the prior restricted to the known classes
        out = np.zeros(p.shape, np.float64)
        out[..., k] = (self.weight if weight is None else weight) * (np.log(pk) - lp)
        return out



@dataclasses.dataclass(frozen=True)
class SharedEvidence:
    """Modalities that read one source of evidence; listed in order of preference."""

    name: str
    members: tuple[str, ...]
    why: str = ""

    def __post_init__(self) -> None:
        unknown = [m for m in self.members if m not in MODALITIES]
        if unknown or len(self.members) < 2:
            raise FusionError(f"shared-evidence group {self.name!r}: members must be two or more of "
                              f"{list(MODALITIES)}, got {list(self.members)}")


DEFAULT_GROUPS: tuple[SharedEvidence, ...] = (SharedEvidence(
    "face_cnn", ("temporal", "face"),
    "the temporal head reads the face CNN's embeddings of the same frames, so the two are one source: on a "
    "clip the temporal head (which also sees the dynamics) speaks for the classes it knows"),)


@dataclasses.dataclass(frozen=True)
class FittedRule:
    """Weights and per-class offsets fitted for one set of present modalities, with the evidence for
    using them: cross-validated scores of the fit and of each single branch on the same clips."""

    modalities: tuple[str, ...]  # in MODALITIES order
    weights: dict[str, float]
    offsets: tuple[float, ...]
    use: bool  # the verdict: the fit's CV score reached the best single branch's
    fallback: str  # the best single branch (what counts when ``use`` is false)
    method: str = "weights"
    reference: str = ""  # whose log prior is the base score (default: the first of ``modalities``)
    scores: dict[str, Any] = dataclasses.field(default_factory=dict)  # CV accuracies, nested score, folds
    data: str = ""  # what it was fitted on
    verdict: str = ""  # the rule's verdict in words

    def __post_init__(self) -> None:
        if not self.reference:
            object.__setattr__(self, "reference", self.modalities[0])
        if set(self.weights) != set(self.modalities) or {self.fallback, self.reference} - set(self.modalities):
            raise FusionError(f"fitted rule for {list(self.modalities)}: weights for {sorted(self.weights)} and "
                              f"fallback {self.fallback!r} and reference {self.reference!r} must name exactly those "
                              "modalities")
        if len(self.offsets) != NUM_EMOTIONS or not np.isfinite(self.offsets).all():
            raise FusionError(f"fitted rule for {list(self.modalities)}: offsets must be {NUM_EMOTIONS} numbers")
        if any(not (w >= 0 and np.isfinite(w)) for w in self.weights.values()):
            raise FusionError(f"fitted rule for {list(self.modalities)}: weights must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FittedRule:
        d = dict(d)
        d["modalities"] = tuple(m for m in MODALITIES if m in d["modalities"])
        d["offsets"] = tuple(float(v) for v in d["offsets"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["modalities"], d["offsets"] = list(self.modalities), [float(v) for v in self.offsets]
        d["weights"] = {m: float(w) for m, w in self.weights.items()}  # full precision: loaded == fitted
        return d


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a set of present modalities is combined: effective weights (0: left out), the classes each
    one counts on (``masks``; None: all it knows), temperatures (None: the card's), offsets, the
    reference prior, why any modality was down-weighted or left out, and which rule."""

    present: tuple[str, ...]
    weights: dict[str, float]
    temperatures: dict[str, float | None]
    offsets: np.ndarray
    notes: dict[str, str]
    rule: str
    reference: str
    prior: np.ndarray  # (7,) log prior term: the reference's, completed on classes it does not know
    masks: dict[str, np.ndarray | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FusionResult:
    probs: np.ndarray  # (7,) fused probabilities
    prior_term: np.ndarray  # (7,) log prior of the reference modality
    contributions: dict[str, np.ndarray]  # modality -> (7,) its exact additive term (zero when left out)
    reference: str  # whose prior is the prior term
    scores: np.ndarray  # (7,) the fused scores, as computed (== prior_term + offset + sum of contributions)
    offset: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(NUM_EMOTIONS))
    weights: dict[str, float] = dataclasses.field(default_factory=dict)  # effective weight of each modality
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # modality -> why down-weighted / left out
    rule: str = "default"

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(self.probs.argmax())]

    def pushes(self) -> dict[str, float]:
        """How far each modality moved the winning class's score above the average class: the centred
        contributions at the winner; with the prior's and the offsets' they sum to the winner's centred score."""
        k = int(self.probs.argmax())
        out = {m: float(c[k] - c.mean()) for m, c in self.contributions.items()}
        out["prior"] = float(self.prior_term[k] - self.prior_term.mean())
        if self.offset.any():
            out["offsets"] = float(self.offset[k] - self.offset.mean())
        return out

    def to_dict(self) -> dict[str, Any]:
        r = lambda v: {e: round(float(x), 4) for e, x in zip(EMOTIONS, v, strict=True)}  # noqa: E731
        d = {"emotion": self.emotion, "probabilities": r(self.probs), "modalities": list(self.contributions),
             "rule": self.rule, "weights": {m: round(w, 4) for m, w in self.weights.items()},
             "notes": dict(self.notes), "prior": {"from": self.reference, "log_prior": r(self.prior_term)},
             "contributions": {m: r(c) for m, c in self.contributions.items()},
             "push_to_winner": {m: round(v, 4) for m, v in self.pushes().items()}}
        if self.offset.any():
            d["offsets"] = r(self.offset)
        return d


def softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (a -inf score gets probability exactly 0)."""
    z = s - s.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class LateFusion:
    """Fuse any subset of MODALITIES; a card (JSON) holds every number it uses."""

    def __init__(self, modalities: Mapping[str, ModalityCal], name: str = "fusion",
                 groups: Sequence[SharedEvidence] = DEFAULT_GROUPS, rules: Sequence[FittedRule] = (),
                 notes: Sequence[str] = ()):
        unknown = set(modalities) - set(MODALITIES)
        if unknown:
            raise FusionError(f"unknown modalities {sorted(unknown)}; expected some of {list(MODALITIES)}")
        self.modalities = dict(modalities)
        self.name = name
        self.groups = tuple(groups)
        self.rules = {frozenset(r.modalities): r for r in rules}
        self.notes = tuple(notes)  # about the card itself (an older version, ...)

    def replace(self, **changes: Any) -> LateFusion:
        """A copy with some of modalities / name / groups / rules changed (fusions are never edited in place,
        so a pipeline serving several threads swaps in a whole new one)."""
        kw: dict[str, Any] = {"modalities": self.modalities, "name": self.name, "groups": self.groups,
                              "rules": tuple(self.rules.values()), "notes": self.notes}
        kw.update(changes)
        return LateFusion(**kw)

    def rule_for(self, present: Sequence[str]) -> FittedRule | None:
        return self.rules.get(frozenset(present))

    def _present(self, outputs: Mapping[str, Any]) -> tuple[str, ...]:
        extra = set(outputs) - set(self.modalities)
        if extra:
            raise FusionError(f"no fusion settings for {sorted(extra)} (this fusion has {list(self.modalities)})")
        present = tuple(m for m in MODALITIES if m in outputs and outputs[m] is not None)
        if not present:
            raise FusionError("nothing to fuse: no modality gave a prediction")
        return present

    def prior_for(self, reference: str, counted: Sequence[str]) -> np.ndarray:
        """The reference modality's log prior; on classes it never saw (the CK+ temporal head: neutral),
        the prior of the first other counted modality that knows them, so that no class is ruled out by a
        prior its own branch knows nothing about. A lone branch keeps its own prior."""
        lp = self.modalities[reference].log_prior.copy()
        known = self.modalities[reference].known_mask.copy()
        for m in counted:
            if m != reference:
                take = self.modalities[m].known_mask & ~known
                lp[take] = self.modalities[m].log_prior[take]
                known |= take
        return lp

    def plan(self, present: Sequence[str]) -> Plan:
        """Which weight each present modality gets, on which classes, and why (see the module docstring)."""
        present = tuple(m for m in MODALITIES if m in present)
        weights = {m: self.modalities[m].weight for m in present}
        temps: dict[str, float | None] = {m: None for m in present}
        notes: dict[str, str] = {}
        rule = self.rule_for(present) if len(present) > 1 else None
        if rule is not None and rule.use:
            weights = {m: float(rule.weights[m]) for m in present}
            for m in present:
                if weights[m] == 0:
                    notes[m] = "left out by the fitted fusion (weight 0 on the paired data)"
                elif weights[m] < 0.5:
                    notes[m] = f"down-weighted by the fitted fusion (weight {weights[m]:.2f})"
            return Plan(present, weights, {m: 1.0 for m in present}, np.asarray(rule.offsets, np.float64), notes,
                        f"fitted on {rule.data}" if rule.data else "fitted", rule.reference,
                        self.prior_for(rule.reference, present))
        if rule is not None:
            for m in present:
                if m != rule.fallback:
                    weights[m] = 0.0
                    notes[m] = (f"left out: on {rule.data or 'the paired data'} fusing did not beat {rule.fallback} "
                                "alone in cross-validation, so the fusion falls back to it")
            return Plan(present, weights, temps, np.zeros(NUM_EMOTIONS), notes, f"fallback to {rule.fallback}",
                        rule.fallback, self.prior_for(rule.fallback, [rule.fallback]))
        masks: dict[str, np.ndarray | None] = {m: None for m in present}
        for g in self.groups:
            here = [m for m in g.members if m in present]
            covered = self.modalities[here[0]].known_mask.copy() if here else None
            for m in here[1:]:
                assert covered is not None
                extra = self.modalities[m].known_mask & ~covered
                covered |= extra
                if not extra.any():
                    weights[m] = 0.0
                    notes[m] = f"counted once with {here[0]} ({g.name}): {g.why}"
                else:  # it still speaks for the classes the preferred member never saw
                    masks[m] = extra
                    only = ", ".join(e for e, x in zip(EMOTIONS, extra, strict=True) if x)
                    notes[m] = (f"counted only on {only}, which {here[0]} never saw; elsewhere counted once with "
                                f"{here[0]} ({g.name}): {g.why}")
        for m in present:
            cal = self.modalities[m]
            if m not in notes and cal.weight < 1:
                notes[m] = f"weight {cal.weight:g}: {(cal.calibration or {}).get('source', 'set in the card')}"
        counted = [m for m in present if weights[m] > 0]
        reference = next((m for m in counted if masks[m] is None), present[0])
        return Plan(present, weights, temps, np.zeros(NUM_EMOTIONS), notes,
                    "default (no fitted rule for these modalities)", reference, self.prior_for(reference, counted),
                    masks)

    def _terms(self, plan: Plan, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for m in plan.present:
            c = self.modalities[m].evidence(np.asarray(outputs[m]), plan.weights[m], plan.temperatures[m])
            mask = plan.masks.get(m)
            out[m] = c if mask is None else np.where(mask, c, 0.0)
        return out

    def fuse(self, outputs: Mapping[str, Any]) -> FusionResult:
        """One sample: ``{"face": probs7, "audio": probs7, ...}`` (missing/None modalities are skipped)."""
        plan = self.plan(self._present(outputs))
        contrib = self._terms(plan, outputs)
        prior = plan.prior
        scores = prior + plan.offsets
        for c in contrib.values():
            scores = scores + c
        return FusionResult(softmax(scores), prior, contrib, plan.reference, scores, plan.offsets.copy(),
                            dict(plan.weights), dict(plan.notes), plan.rule)

    def fuse_batch(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, 7) arrays per modality -> (N, 7) fused probabilities (same maths as ``fuse``)."""
        plan = self.plan(self._present(outputs))
        s = plan.prior + plan.offsets + sum(self._terms(plan, outputs).values())
        return softmax(s)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "fusion", "version": CARD_VERSION, "name": self.name, "classes": list(EMOTIONS),
                "modalities": {m: dataclasses.asdict(c) for m, c in self.modalities.items()},
                "shared_evidence": [dataclasses.asdict(g) for g in self.groups],
                "fitted": [r.to_dict() for r in self.rules.values()]}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LateFusion:
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
            if not isinstance(doc, dict) or doc.get("kind") != "fusion":
                raise FusionError("not a fusion card")
            version = doc.get("version", 1)
            if not isinstance(version, int) or version > CARD_VERSION:
                raise FusionError(f"card version {version!r} is newer than this mmfer reads ({CARD_VERSION}): "
                                  f"upgrade mmfer, or {REBUILD}")
            if list(doc.get("classes", [])) != list(EMOTIONS):
                raise FusionError(f"classes {doc.get('classes')} are not {list(EMOTIONS)}")
            mods = {m: ModalityCal(**c) for m, c in doc["modalities"].items()}
            notes: list[str] = []
            if version < 2:  # no shared-evidence groups then: the defaults count face + temporal once
                groups = DEFAULT_GROUPS
                notes.append(f"{p.name}: a version-1 fusion card (no fitted weights, no shared-evidence groups): "
                             f"the default groups apply; {REBUILD}")
            else:
                groups = tuple(SharedEvidence(g["name"], tuple(g["members"]), g.get("why", ""))
                               for g in doc.get("shared_evidence", []))
            rules = [FittedRule.from_dict(r) for r in doc.get("fitted", [])]
            for r in rules:
                missing = set(r.modalities) - set(mods)
                if missing:
                    raise FusionError(f"fitted rule for {list(r.modalities)} names {sorted(missing)}, which the card "
                                      "has no settings for")
        except FileNotFoundError:
            raise FusionError(f"{p}: no such fusion card") from None
        except IsADirectoryError:
            raise FusionError(f"{p}: is a folder, not a fusion card (a .json file)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise FusionError(f"{p}: {exc}") from None
        return cls(mods, doc.get("name", p.stem), groups, rules, notes)
