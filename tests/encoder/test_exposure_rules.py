"""Refusals that keep a stack from being exposed or fooled: pickled checkpoints, a remote head without token auth,
``--gpu`` where no GPU is; each a one-line error."""

from __future__ import annotations

import pytest

from shared.config import MusicHalConfig
from shared.errors import DeviceError, MusicHalError


def test_bin_only_checkpoint_is_refused_with_a_hint(tiny_wav2vec_dir, tmp_path):
    import shutil

    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from services.encoder.wav2vec import load_wav2vec_checkpoint

    pickled = tmp_path / "bin_only"  # what an old checkpoint looks like: config + pickled state dict
    pickled.mkdir()
    shutil.copy(tiny_wav2vec_dir / "config.json", pickled / "config.json")
    torch.save(Wav2Vec2Model.from_pretrained(tiny_wav2vec_dir).state_dict(), pickled / "pytorch_model.bin")
    Wav2Vec2FeatureExtractor.from_pretrained(tiny_wav2vec_dir).save_pretrained(pickled)
    assert list(pickled.glob("*.bin")) and not list(pickled.glob("*.safetensors"))
    with pytest.raises(DeviceError) as caught:
        load_wav2vec_checkpoint(str(pickled))
    line = str(caught.value)
    assert "\n" not in line and ".bin" in line and "safe_serialization=True" in line
    network, _, _ = load_wav2vec_checkpoint(str(tiny_wav2vec_dir))  # the safetensors one loads
    assert network is not None


@pytest.mark.parametrize("address", ["10.1.2.3:6379", "gpu-box.local:6379", "ray://10.1.2.3:10001"])
def test_remote_head_without_token_is_refused(monkeypatch, tmp_path, address):
    from shared.cluster_security import require_token_auth

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(MusicHalError) as caught:
        require_token_auth(address)
    assert "RAY_AUTH_MODE=token" in str(caught.value) and "RAY_AUTH_TOKEN" in str(caught.value)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    require_token_auth(address)  # configured: accepted
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(MusicHalError):
        require_token_auth(address)


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "localhost:6379", "[::1]:6379", "auto"])
def test_loopback_head_needs_no_token(monkeypatch, tmp_path, address):
    from shared.cluster_security import require_token_auth

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    require_token_auth(address)


class _FakeRay:
    def __init__(self, nodes):
        self._nodes = nodes

    def nodes(self):
        return self._nodes


def test_gpu_placement_sees_gpus_on_the_encoders_node_only():
    from services.stack import gpu_placement

    head = {"NodeID": "h", "Alive": True, "Resources": {"CPU": 2.0, "GPU": 1.0}}
    box = {"NodeID": "b", "Alive": True, "Resources": {"CPU": 8.0, "encoder": 1.0}}
    config = MusicHalConfig().with_overrides({"cluster.encoder_resource": "encoder", "cluster.encoder_num_gpus": 0.5})
    fits, seen = gpu_placement(_FakeRay([head, box]), config)
    assert not fits and "'encoder'" in seen and "GPUs seen: 1" in seen  # the GPU is on the head, not the box
    box["Resources"]["GPU"] = 1.0
    assert gpu_placement(_FakeRay([head, box]), config)[0]
    assert not gpu_placement(_FakeRay([{**box, "Alive": False}]), config)[0]
