"""Late fusion of the face, temporal, audio and scene branches with exact per-modality contributions."""
