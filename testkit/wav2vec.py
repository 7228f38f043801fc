"""Tiny random Wav2Vec2 checkpoints saved with ``save_pretrained`` (safetensors), for tests and benchmarks where the
encoder's plumbing, not the model, is under test. Seeded: the same bytes every time."""

from __future__ import annotations

from pathlib import Path


def save_tiny_wav2vec(directory: Path, *, group_norm: bool = True) -> Path:
    """A 32-wide, 2-layer random Wav2Vec2 with its feature extractor; ``group_norm`` (like wav2vec2-base) or a
    layer-norm feature encoder (like wav2vec2-large-robust)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        feat_extract_norm="group" if group_norm else "layer",
        do_stable_layer_norm=not group_norm,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    model = Wav2Vec2Model(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=not group_norm
    ).save_pretrained(directory)
    return directory
