import torch

from service.ml import checkpoint
from service.ml.config import PRESETS, ModelConfig
from service.ml.model.autoencoder import AutoEncoder
from service.ml.model.diffusion import Denoiser, LinearAttention
from service.ml.model.sampler import ddim, seeded_noise
from service.ml.tags import SLOTS
from service.ml.training.losses import as_heard, info_nce, supervised_contrastive

CONFIG = PRESETS["tiny"].model


def test_autoencoder_shapes_and_normalised_global_latent():
    model = AutoEncoder(CONFIG).eval()
    log_mel = torch.randn(3, CONFIG.n_mels, CONFIG.n_frames)
    with torch.no_grad():
        g = model.encode_global(log_mel)
        content = model.encode_content(log_mel)
        out = model.decode(g, content)
    assert g.shape == (3, CONFIG.latent_dim) and content.shape == (3, CONFIG.content_dim)
    assert torch.allclose(g.norm(dim=1), torch.full((3,), CONFIG.latent_dim**0.5), rtol=1e-3)
    assert out.shape == log_mel.shape


def test_global_latent_pools_over_time():
    model = AutoEncoder(CONFIG).eval()
    log_mel = torch.randn(1, CONFIG.n_mels, CONFIG.n_frames)
    with torch.no_grad():
        base = model.encode_global(log_mel)
        rolled = model.encode_global(torch.roll(log_mel, 64, dims=-1))  # same frames, another order
        longer = model.encode_global(torch.cat([log_mel, log_mel], dim=-1))
    assert torch.nn.functional.cosine_similarity(base, rolled).item() > 0.95
    assert longer.shape == base.shape


def test_denoiser_shape_and_sampler_determinism():
    model = Denoiser(CONFIG).eval()
    for parameter in model.unembed.parameters():  # non-zero output so the test can see the network
        torch.nn.init.normal_(parameter, std=0.1)
    ids = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    v = model(torch.randn(2, CONFIG.joint_dim), torch.rand(2), ids)
    assert v.shape == (2, CONFIG.joint_dim)
    first = ddim(model, seeded_noise([1, 2], CONFIG.joint_dim), ids, 5, 3.0)
    second = ddim(model, seeded_noise([1, 2], CONFIG.joint_dim), ids, 5, 3.0)
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


def test_configs_of_the_flat_latent_architecture_are_refused_by_name():
    legacy = {k: v for k, v in CONFIG.to_dict().items() if k != "architecture"}
    try:
        ModelConfig.from_dict(legacy)
    except ValueError as error:
        assert "architecture" in str(error) and "flat-latent" in str(error)
    else:
        raise AssertionError("a config without the architecture field was accepted")
    assert ModelConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_as_heard_restores_the_energy_loudness_normalisation_would():
    model = AutoEncoder(CONFIG)
    log_mel = torch.randn(2, model.mel_mean.shape[0], 32) - 6.0
    quieter = model.standardise(log_mel - torch.tensor([2.0, 0.5])[:, None, None])
    assert torch.allclose(as_heard(quieter, log_mel, model), log_mel, atol=1e-4)


def test_contrastive_losses_prefer_the_right_neighbours():
    a = torch.randn(6, 16)
    classes = torch.tensor([0, 0, 0, 1, 1, 1])
    grouped = torch.cat([a[:1].expand(3, -1), a[3:4].expand(3, -1)]) + 0.01 * torch.randn(6, 16)
    assert supervised_contrastive(grouped, classes) < supervised_contrastive(a, classes)
    assert info_nce(a + 0.01 * torch.randn(6, 16), a) < info_nce(a, a.roll(1, dims=0))


def test_content_has_unit_rms_and_does_not_saturate_on_loud_input():
    model = AutoEncoder(CONFIG).eval()
    with torch.no_grad():
        quiet = model.content_encoder(torch.randn(2, CONFIG.n_mels, CONFIG.n_frames))
        loud = model.content_encoder(1000 * torch.randn(2, CONFIG.n_mels, CONFIG.n_frames))
    for content in (quiet, loud):
        assert torch.allclose(content.pow(2).mean(dim=(1, 2)), torch.ones(2), rtol=1e-3)
    assert loud.abs().max() > 1.0  # not squashed into [-1, 1]


def test_checkpoints_from_before_the_content_norm_setting_keep_their_tanh_content():
    before = {k: v for k, v in CONFIG.to_dict().items() if k != "content_norm"}
    assert ModelConfig.from_dict(before).content_norm == "tanh"
    assert ModelConfig.from_dict(CONFIG.to_dict()).content_norm == "rms"
