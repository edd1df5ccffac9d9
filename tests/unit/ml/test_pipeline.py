"""Behaviour of the tiny model end to end (trained once per session by the tiny_checkpoint fixture)."""

import numpy as np
import pytest

from service.ml.errors import InvalidAudioError, ParameterRangeError, PromptError
from service.ml.pipeline import Pipeline

pytestmark = pytest.mark.slow


def test_rebuilds_from_file_with_identity(tiny_pipeline, tiny_checkpoint):
    again = Pipeline.load(tiny_checkpoint)
    assert again.sha256 == tiny_pipeline.sha256 and len(again.sha256) == 64
    assert again.version.startswith("tiny-")
    config = tiny_pipeline.config
    assert config.latent_dim == 512 and config.joint_dim == 512 + config.content_dim
    assert 0.0 < tiny_pipeline.in_domain_threshold < 1.0
    assert not tiny_pipeline.autoencoder.training and not tiny_pipeline.denoiser.training


def test_generate_decode_encode_shapes_and_round_trip(tiny_pipeline):
    config = tiny_pipeline.config
    joint = tiny_pipeline.generate(["piano, minor, 90 bpm", "bass, fast"], [1, 2], steps=5, guidance_scale=2.0)
    assert joint.shape == (2, config.joint_dim) and joint.dtype == np.float32
    audio = tiny_pipeline.decode(joint)
    assert audio.shape == (2, config.n_samples) and audio.dtype == np.float32
    assert np.all(np.abs(audio) <= 1.0) and np.all(np.isfinite(audio))
    encoded = tiny_pipeline.encode(audio[0], config.sample_rate)
    assert encoded.shape == (512,) and encoded.dtype == np.float32
    assert np.isclose(np.linalg.norm(encoded), np.sqrt(512), rtol=1e-3)
    batch = tiny_pipeline.encode_batch([audio[0], audio[1][:20_000]], config.sample_rate)
    assert batch.shape == (2, 512)
    assert np.allclose(batch[0], encoded, atol=1e-4)
    assert np.allclose(tiny_pipeline.searchable(joint), joint[:, :512])


def test_the_latent_does_not_move_when_the_music_starts_later(tiny_pipeline):
    rate = tiny_pipeline.config.sample_rate
    audio = tiny_pipeline.decode(tiny_pipeline.generate(["organ"], [3], steps=5))[0]
    plain = tiny_pipeline.encode(audio, rate)
    for ms in (16, 50, 500):
        later = tiny_pipeline.encode(np.concatenate([np.zeros(rate * ms // 1000, np.float32), audio]), rate)
        assert float(plain @ later) / 512 > 0.999, ms


def test_a_long_file_is_windowed_and_pooled(tiny_pipeline):
    rate = tiny_pipeline.config.sample_rate
    clips = tiny_pipeline.decode(tiny_pipeline.generate(["piano", "piano", "piano"], [1, 2, 3], steps=5))
    analysis = tiny_pipeline.analyse(np.concatenate(list(clips)), rate)
    assert analysis.window_latents.shape == (5, 512)  # 12 s: windows start at 0, 2, 4, 6, 8 s
    assert np.allclose(analysis.window_starts, [0, 2, 4, 6, 8], atol=0.05)
    assert np.allclose(analysis.window_ends - analysis.window_starts, 4.0)
    assert np.isclose(np.linalg.norm(analysis.latent), np.sqrt(512), rtol=1e-3)
    assert 0.0 <= analysis.in_domain <= 1.0 and analysis.in_domain_ok == (
        analysis.in_domain >= tiny_pipeline.in_domain_threshold
    )
    assert np.array_equal(analysis.latent, tiny_pipeline.encode(np.concatenate(list(clips)), rate))


def test_files_analysed_together_match_each_alone_and_a_refused_file_keeps_its_place(tiny_pipeline, monkeypatch):
    rate = tiny_pipeline.config.sample_rate
    clips = tiny_pipeline.decode(tiny_pipeline.generate(["piano", "bass", "organ"], [1, 2, 3], steps=5))
    files = [(np.concatenate(list(clips)), rate), (np.zeros(rate, np.float32), rate), (clips[1], 44_100)]
    monkeypatch.setattr("service.ml.pipeline.MAX_WINDOWS", 4)  # the 5-window file fills a group of its own
    together = tiny_pipeline.analyse_many(files)
    assert isinstance(together[1], InvalidAudioError) and together[1].field == "audio"
    for (audio, sample_rate), analysis in zip([files[0], files[2]], [together[0], together[2]], strict=True):
        alone = tiny_pipeline.analyse(audio, sample_rate)
        assert np.allclose(analysis.latent, alone.latent, atol=1e-4)
        assert np.allclose(analysis.window_in_domain, alone.window_in_domain, atol=1e-5)


def test_fixed_seeds_are_byte_identical(tiny_pipeline):
    first = tiny_pipeline.generate(["strings, major"], [7], steps=4, guidance_scale=3.0)
    second = tiny_pipeline.generate(["strings, major"], [7], steps=4, guidance_scale=3.0)
    other = tiny_pipeline.generate(["strings, major"], [8], steps=4, guidance_scale=3.0)
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != other.tobytes()
    assert tiny_pipeline.decode(first).tobytes() == tiny_pipeline.decode(second).tobytes()
    variants = tiny_pipeline.variants(first[0], 0.4, [1, 2])
    assert variants.tobytes() == tiny_pipeline.variants(first[0], 0.4, [1, 2]).tobytes()


def test_variants_move_away_with_variance(tiny_pipeline):
    source = tiny_pipeline.generate(["flute"], [11], steps=5, guidance_scale=2.0)[0]
    assert np.array_equal(tiny_pipeline.variants(source, 0.0, [1])[0], source)
    near = tiny_pipeline.variants(source, 0.1, [1, 2, 3])
    far = tiny_pipeline.variants(source, 0.9, [1, 2, 3])
    assert near.shape == (3, tiny_pipeline.config.joint_dim)
    assert (near @ source).mean() > (far @ source).mean()


def test_a_clip_decodes_the_same_alone_or_in_a_batch(tiny_pipeline):
    joint = tiny_pipeline.generate(["piano", "brass", "organ"], [1, 2, 3], steps=5)
    batch = tiny_pipeline.decode(joint)
    assert np.abs(tiny_pipeline.decode(joint[1]) - batch[1:2]).max() < 1e-4  # batched convs round differently


def test_transfer_keeps_the_content_and_moves_the_global_latent(tiny_pipeline):
    source, style = tiny_pipeline.generate(["piano", "brass"], [1, 2], steps=5, guidance_scale=2.0)
    style_latent = tiny_pipeline.searchable(style)
    assert np.array_equal(tiny_pipeline.transfer(source, style_latent, strength=0.0), source)
    full = tiny_pipeline.transfer(source, style_latent, strength=1.0)
    assert np.allclose(full[:512], style_latent, atol=1e-4)
    assert np.array_equal(full[512:], source[512:])
    towards = [float(tiny_pipeline.transfer(source, style_latent, s)[:512] @ style_latent) for s in (0.2, 0.5, 0.8)]
    assert towards == sorted(towards)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p, z: p.generate(["piano"], [1], steps=0, guidance_scale=3.0), "steps"),
        (lambda p, z: p.generate(["piano"], [1], steps=1000, guidance_scale=3.0), "steps"),
        (lambda p, z: p.generate(["piano"], [1], steps=5, guidance_scale=-1.0), "guidance_scale"),
        (lambda p, z: p.generate(["piano"], [1], steps=5, guidance_scale=float("nan")), "guidance_scale"),
        (lambda p, z: p.generate(["piano", "organ"], [1], steps=5, guidance_scale=3.0), "seeds"),
        (lambda p, z: p.generate(["piano"], [-1], steps=5, guidance_scale=3.0), "seeds"),
        (lambda p, z: p.variants(z, 1.5, [1]), "variance"),
        (lambda p, z: p.variants(z, -0.1, [1]), "variance"),
        (lambda p, z: p.variants(z, 0.5, []), "seeds"),
        (lambda p, z: p.transfer(z, z[:512], strength=2.0), "strength"),
        (lambda p, z: p.transfer(z, z, strength=0.5), "style_latent"),
        (lambda p, z: p.decode(np.zeros((1, 7), dtype=np.float32)), "latents"),
        (lambda p, z: p.decode(np.full_like(z, np.nan)[None]), "latents"),
        (lambda p, z: p.variants(np.zeros_like(z), 0.5, [1]), "latent"),
    ],
)
def test_out_of_range_parameters_name_field_and_range(tiny_pipeline, call, field):
    joint = np.ones(tiny_pipeline.config.joint_dim, dtype=np.float32)
    with pytest.raises(ParameterRangeError) as error:
        call(tiny_pipeline, joint)
    assert error.value.field == field
    assert field.split("[")[0] in str(error.value)


def test_unknown_tag_in_generate(tiny_pipeline):
    with pytest.raises(PromptError) as error:
        tiny_pipeline.generate(["piano", "orgn"], [1, 2], steps=5, guidance_scale=3.0)
    assert error.value.field == "prompts[1]"
    assert "organ" in error.value.suggestions


def test_tiny_training_losses_decrease(tiny_pipeline):
    history = tiny_pipeline.history
    autoencoder = [row for row in history if row["phase"] == "autoencoder"]
    denoiser = [row for row in history if row["phase"] == "denoiser"]
    assert len(autoencoder) >= 2 and len(denoiser) >= 2
    assert autoencoder[-1]["train_loss"] < autoencoder[0]["train_loss"]
    assert autoencoder[-1]["val_log_mel_l1"] < autoencoder[0]["val_log_mel_l1"]
    assert denoiser[-1]["train_loss"] < denoiser[0]["train_loss"]
