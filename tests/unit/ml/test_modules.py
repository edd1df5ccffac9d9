from dataclasses import replace

import torch

from service.ml import checkpoint
from service.ml.autoencoder import AutoEncoder
from service.ml.config import LEGACY_MODEL_FIELDS, PRESETS, ModelConfig
from service.ml.diffusion import Denoiser, LinearAttention
from service.ml.sampler import ddim, seeded_noise
from service.ml.tags import SLOTS
from service.ml.training import as_heard

CONFIG = PRESETS["tiny"].model


def test_autoencoder_shapes_and_normalised_latent():
    model = AutoEncoder(CONFIG).eval()
    log_mel = torch.randn(3, CONFIG.n_mels, CONFIG.n_frames)
    with torch.no_grad():
        z = model.encode(log_mel)
        out = model.decode(z)
    assert z.shape == (3, CONFIG.latent_dim) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.full((3,), CONFIG.latent_dim**0.5), rtol=1e-3)
    assert out.shape == log_mel.shape


def test_denoiser_shape_and_sampler_determinism():
    model = Denoiser(CONFIG).eval()
    for parameter in model.unembed.parameters():  # non-zero output so the test can see the network
        torch.nn.init.normal_(parameter, std=0.1)
    ids = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    v = model(torch.randn(2, CONFIG.latent_dim), torch.rand(2), ids)
    assert v.shape == (2, CONFIG.latent_dim)
    first = ddim(model, seeded_noise([1, 2], CONFIG.latent_dim), ids, 5, 3.0)
    second = ddim(model, seeded_noise([1, 2], CONFIG.latent_dim), ids, 5, 3.0)
    assert torch.equal(first, second)
    assert len(SLOTS) == ids.shape[1]


def test_seeded_noise_does_not_depend_on_batch():
    assert torch.equal(seeded_noise([5], 16)[0], seeded_noise([3, 5], 16)[1])


def test_linear_attention_is_permutation_equivariant():
    attention = LinearAttention(32, 4)
    x = torch.randn(2, 6, 32)
    order = torch.randperm(6)
    assert torch.allclose(attention(x)[:, order], attention(x[:, order]), atol=1e-5)


def test_checkpoint_half_round_trip(tmp_path):
    state = {"w": torch.randn(4, 4), "n": torch.tensor([3])}
    path = checkpoint.write({"format": checkpoint.FORMAT, "state": checkpoint.half(state)}, tmp_path / "c.pt")
    restored = checkpoint.full(checkpoint.read(path)["state"])
    assert restored["w"].dtype == torch.float32 and restored["n"].dtype == torch.int64
    assert torch.allclose(restored["w"], state["w"], atol=1e-2)
    assert len(checkpoint.sha256(path)) == 64


def test_checkpoint_configs_without_newer_fields_rebuild_as_trained():
    legacy = {k: v for k, v in PRESETS["tiny"].model.to_dict().items() if k not in LEGACY_MODEL_FIELDS}
    assert ModelConfig.from_dict(legacy) == replace(PRESETS["tiny"].model, **LEGACY_MODEL_FIELDS)
    assert ModelConfig.from_dict(PRESETS["tiny"].model.to_dict()) == PRESETS["tiny"].model


def test_as_heard_restores_the_energy_loudness_normalisation_would():
    model = AutoEncoder(PRESETS["tiny"].model)
    log_mel = torch.randn(2, model.mel_mean.shape[0], 32) - 6.0
    quieter = model.standardise(log_mel - torch.tensor([2.0, 0.5])[:, None, None])
    assert torch.allclose(as_heard(quieter, log_mel, model), log_mel, atol=1e-4)
