"""Tiny randomly initialised transformers checkpoints, written with ``save_pretrained`` exactly as a
user's download would be laid out, so tests load them through the same path as real ones."""

from __future__ import annotations

import json
from pathlib import Path

import torch

_W2V = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, conv_dim=(16, 16, 16),
            conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True)
SPEECH_LABELS = {0: "neu", 1: "hap", 2: "ang", 3: "sad"}  # IEMOCAP-style abbreviations
FACE_LABELS = {0: "anger", 1: "contempt", 2: "disgust", 3: "fear", 4: "happiness", 5: "neutral", 6: "sadness",
               7: "surprise"}  # AffectNet-8 style


def _extractor():  # noqa: ANN202
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                    return_attention_mask=True)


def speech_encoder(out: Path, seed: int = 0) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(**_W2V)).save_pretrained(out)
    _extractor().save_pretrained(out)
    return out


def speech_classifier(out: Path, labels: dict[int, str] = SPEECH_LABELS, seed: int = 0) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(**_W2V, num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})
    Wav2Vec2ForSequenceClassification(cfg).save_pretrained(out)
    _extractor().save_pretrained(out)
    return out


def face_classifier(out: Path, labels: dict[int, str] = FACE_LABELS, seed: int = 0) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=37, num_labels=len(labels), id2label=labels,
                    label2id={v: k for k, v in labels.items()})
    ViTForImageClassification(cfg).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def clip(out: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    torch.manual_seed(seed)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=2)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(out)
    for f in ("vocab.json", "merges.txt"):
        (out / f).unlink()
    return out
