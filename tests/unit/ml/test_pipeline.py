"""Behaviour of the tiny model end to end (trained once per session by the tiny_checkpoint fixture)."""

import numpy as np
import pytest

from service.ml.errors import ParameterRangeError, PromptError
from service.ml.instruments import FAMILY_NAMES
from service.ml.pipeline import Pipeline

pytestmark = pytest.mark.slow


def test_rebuilds_from_file_with_identity(tiny_pipeline, tiny_checkpoint):
    again = Pipeline.load(tiny_checkpoint)
    assert again.sha256 == tiny_pipeline.sha256 and len(again.sha256) == 64
    assert again.version.startswith("tiny-")
    assert tiny_pipeline.config.latent_dim == 512
    assert not tiny_pipeline.autoencoder.training and not tiny_pipeline.denoiser.training


def test_generate_decode_encode_shapes_and_round_trip(tiny_pipeline):
    config = tiny_pipeline.config
    latents = tiny_pipeline.generate(["piano, minor, 90 bpm", "bass, fast"], [1, 2], steps=5, guidance_scale=2.0)
    assert latents.shape == (2, 512) and latents.dtype == np.float32
    audio = tiny_pipeline.decode(latents)
    assert audio.shape == (2, config.n_samples) and audio.dtype == np.float32
    assert np.all(np.abs(audio) <= 1.0) and np.all(np.isfinite(audio))
    encoded = tiny_pipeline.encode(audio[0], config.sample_rate)
    assert encoded.shape == (512,) and encoded.dtype == np.float32
    batch = tiny_pipeline.encode_batch([audio[0], audio[1][:20_000]], config.sample_rate)
    assert batch.shape == (2, 512)
    assert np.allclose(batch[0], encoded, atol=1e-5)


def test_round_trip_is_closer_than_an_unrelated_clip(tiny_pipeline):
    latents = tiny_pipeline.generate(["organ", "synth lead"], [3, 4], steps=5, guidance_scale=2.0)
    audio = tiny_pipeline.decode(latents)
    again = tiny_pipeline.encode_batch(list(audio), tiny_pipeline.config.sample_rate)
    assert float(again[0] @ latents[0]) > -512  # finite, on the latent sphere
    assert np.allclose(np.linalg.norm(again, axis=1), np.sqrt(512), rtol=1e-3)


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
    assert near.shape == (3, 512)
    assert (near @ source).mean() > (far @ source).mean()


def test_a_clip_decodes_the_same_alone_or_in_a_batch(tiny_pipeline):
    latents = tiny_pipeline.generate(["piano", "brass", "organ"], [1, 2, 3], steps=5)
    batch = tiny_pipeline.decode(latents)
    assert np.abs(tiny_pipeline.decode(latents[1]) - batch[1:2]).max() < 1e-4  # batched convs round differently


def test_transfer_shape_and_zero_strength_identity(tiny_pipeline):
    source, style = tiny_pipeline.generate(["piano", "brass"], [1, 2], steps=5, guidance_scale=2.0)
    out = tiny_pipeline.transfer(source, style, strength=0.6, seed=3, style_tags=["brass"])
    assert out.shape == (512,) and out.dtype == np.float32
    assert np.array_equal(tiny_pipeline.transfer(source, style, strength=0.0, seed=3), source)
    assert len(tiny_pipeline.predict_tags(out)) == 4


def test_transfer_moves_towards_the_style_family_as_strength_rises(tiny_pipeline):
    sources = tiny_pipeline.generate(["piano", "organ", "guitar", "flute"], [1, 2, 3, 4], steps=5)
    means = tiny_pipeline.family_means.numpy()
    brass = means[FAMILY_NAMES.index("brass")] - means.mean(axis=0)  # what sets brass apart from the others

    def transferred(strength: float) -> list[np.ndarray]:
        return [tiny_pipeline.transfer(s, s, strength, seed=5, style_tags=["brass"]) for s in sources]

    def towards_brass(strength: float) -> float:
        return float(np.mean([out @ brass for out in transferred(strength)]))

    assert towards_brass(0.0) < towards_brass(0.3) < towards_brass(0.6)
    heard = [tiny_pipeline.predict_tags(out)[0] for out in transferred(0.6)]
    assert heard.count("brass") >= 3, heard


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
        (lambda p, z: p.transfer(z, z, strength=2.0, seed=1), "strength"),
        (lambda p, z: p.decode(np.zeros((1, 7), dtype=np.float32)), "latents"),
        (lambda p, z: p.decode(np.full((1, 512), np.nan, dtype=np.float32)), "latents"),
        (lambda p, z: p.variants(np.zeros(512, dtype=np.float32), 0.5, [1]), "latent"),
    ],
)
def test_out_of_range_parameters_name_field_and_range(tiny_pipeline, call, field):
    latent = np.ones(512, dtype=np.float32)
    with pytest.raises(ParameterRangeError) as error:
        call(tiny_pipeline, latent)
    assert error.value.field == field
    assert field.split("[")[0] in str(error.value)


def test_unknown_tag_in_generate_and_transfer(tiny_pipeline):
    with pytest.raises(PromptError) as error:
        tiny_pipeline.generate(["piano", "orgn"], [1, 2], steps=5, guidance_scale=3.0)
    assert error.value.field == "prompts[1]"
    assert "organ" in error.value.suggestions
    z = np.ones(512, dtype=np.float32)
    with pytest.raises(PromptError):
        tiny_pipeline.transfer(z, z, 0.5, 1, style_tags=["pianoo"])


def test_tiny_training_losses_decrease(tiny_pipeline):
    history = tiny_pipeline.history
    autoencoder = [row for row in history if row["phase"] == "autoencoder"]
    denoiser = [row for row in history if row["phase"] == "denoiser"]
    assert len(autoencoder) >= 2 and len(denoiser) >= 2
    assert autoencoder[-1]["train_loss"] < autoencoder[0]["train_loss"]
    assert autoencoder[-1]["val_log_mel_l1"] < autoencoder[0]["val_log_mel_l1"]
    assert denoiser[-1]["train_loss"] < denoiser[0]["train_loss"]
