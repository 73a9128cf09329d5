"""The real CREMA-D talking faces (video + voice, Flash .flv) through face + temporal + audio and the
fusion: every branch runs, the face CNN is counted once, and the fused scores decompose exactly."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA, YUNET_640
from mmfer.emotions import EMOTIONS
from mmfer.pipeline import EmotionPipeline

CREMA = SHARED_DATA / "crema_d_samples"
CLIPS = sorted(CREMA.glob("1001_*.flv"))
needs_crema = pytest.mark.skipif(len(CLIPS) < 6, reason=f"CREMA-D sample clips not found at {CREMA} (../shared absent)")


@needs_crema
def test_crema_d_clips_through_face_temporal_and_audio() -> None:
    pipe = EmotionPipeline(scene=False, yunet_model=str(YUNET_640) if YUNET_640.is_file() else None)
    for clip in CLIPS[:3]:  # angry, disgust, fear: three real clips keep this quick
        a = pipe.analyze(clip)
        assert a.kind == "video" and set(a.branches) == {"face", "temporal", "audio"}, (clip.name, a.skipped)
        f = a.fused
        neutral = EMOTIONS.index("neutral")  # the temporal head never saw it: there the face frame average counts
        assert f is not None and np.flatnonzero(f.contributions["face"]).tolist() == [neutral]
        assert "counted only on neutral" in f.notes["face"] and f.weights["audio"] > 0
        np.testing.assert_allclose(f.scores, f.prior_term + f.offset + sum(f.contributions.values()), atol=1e-12)
        doc = a.to_dict()["fused"]
        assert doc["weights"]["temporal"] > 0 and "face" in doc["notes"]
        # face + temporal alone: the card's fitted rule (CK+) applies, or its fallback, never both counted in full
        pair = pipe.fusion.fuse({m: a.branches[m] for m in ("face", "temporal")})
        rule = pipe.fusion.rule_for(["face", "temporal"])
        want = f"fitted on {rule.data}" if rule is not None and rule.use else f"fallback to {rule and rule.fallback}"
        assert rule is not None and pair.rule == want
