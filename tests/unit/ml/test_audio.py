import numpy as np
import pytest
import torch

from service.ml.audio import MIN_SECONDS, TARGET_RMS, MelFrontEnd, prepare, prepare_windows, resample
from service.ml.errors import InvalidAudioError


def tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_prepare_resamples_crops_and_normalises(tiny_config):
    clip = prepare(tone(6.0, 44_100), 44_100, tiny_config)
    assert clip.shape == (tiny_config.n_samples,) and clip.dtype == np.float32
    assert np.sqrt(np.mean(clip**2)) == pytest.approx(TARGET_RMS, rel=1e-3)


def test_prepare_pads_short_audio_with_silence(tiny_config):
    clip = prepare(tone(1.0, 16_000), 16_000, tiny_config)
    assert clip.shape == (tiny_config.n_samples,)
    assert np.all(clip[16_100:] == 0.0) and np.any(clip[:16_000] != 0.0)


def test_prepare_mixes_stereo_to_mono(tiny_config):
    stereo = np.stack([tone(2.0, 16_000), tone(2.0, 16_000)], axis=1)
    assert prepare(stereo, 16_000, tiny_config).shape == (tiny_config.n_samples,)


def test_resample_keeps_frequency():
    out = resample(tone(1.0, 48_000, hz=1000.0), 48_000, 16_000)
    assert out.size == 16_000
    assert np.argmax(np.abs(np.fft.rfft(out))) == 1000


@pytest.mark.parametrize(
    ("audio", "rate", "field", "words"),
    [
        (np.zeros(0, dtype=np.float32), 16_000, "audio", "empty"),
        (np.zeros(32_000, dtype=np.float32), 16_000, "audio", "silent"),
        (tone(MIN_SECONDS / 2, 16_000), 16_000, "audio", "too short"),
        (np.full(32_000, np.nan, dtype=np.float32), 16_000, "audio", "NaN"),
        (np.concatenate([tone(2.0, 16_000), [np.inf]]).astype(np.float32), 16_000, "audio", "infinite"),
        (tone(2.0, 16_000), 4_000, "sample_rate", "8000"),
        (tone(2.0, 16_000), 1_000_000, "sample_rate", "192000"),
        (tone(2.0, 16_000), 16_000.5, "sample_rate", "integer"),
        (np.array(["a", "b"]), 16_000, "audio", "numeric"),
        (np.zeros((2, 2, 2), dtype=np.float32), 16_000, "audio", "1-D"),
    ],
)
def test_bad_audio_names_the_problem(tiny_config, audio, rate, field, words):
    with pytest.raises(InvalidAudioError) as error:
        prepare(audio, rate, tiny_config)
    assert error.value.field == field
    assert words in str(error.value)
    assert isinstance(error.value, ValueError)


def test_log_mel_shape_and_griffin_lim_range(tiny_config):
    frontend = MelFrontEnd(tiny_config)
    clip = torch.from_numpy(prepare(tone(4.0, 16_000), 16_000, tiny_config))[None]
    log_mel = frontend.log_mel(clip)
    assert log_mel.shape == (1, tiny_config.n_mels, tiny_config.n_frames)
    audio = frontend.to_audio(log_mel, torch.Generator().manual_seed(0))
    assert audio.shape == (1, tiny_config.n_samples)
    assert float(audio.abs().max()) <= 1.0
    # the resynthesised tone keeps its pitch to within one mel band (~50 Hz wide around 440 Hz)
    assert abs(int(np.argmax(np.abs(np.fft.rfft(audio[0].numpy())))) / 4.0 - 440.0) < 40.0


def test_mel_inversion_matches_the_mel_it_came_from(tiny_config):
    frontend = MelFrontEnd(tiny_config)
    chord = tone(4.0, 16_000, 220.0) + tone(4.0, 16_000, 660.0) + 0.1 * tone(4.0, 16_000, 3_000.0)
    mel_power = torch.exp(frontend.log_mel(torch.from_numpy(prepare(chord, 16_000, tiny_config))[None]))
    linear = frontend.linear_power(mel_power)
    assert linear.shape == (1, tiny_config.n_fft // 2 + 1, tiny_config.n_frames)
    assert float(linear.min()) >= 0.0

    def miss(power: torch.Tensor) -> float:
        refit = torch.log(torch.clamp(frontend.filterbank @ power, min=1e-5))
        return float((refit - torch.log(mel_power)).abs().mean())

    clipped_pseudo_inverse = torch.clamp(torch.linalg.pinv(frontend.filterbank) @ mel_power, min=0.0)
    assert miss(linear) < 0.5
    assert miss(linear) < miss(clipped_pseudo_inverse) / 2


def test_leading_silence_is_trimmed_so_a_later_start_is_the_same_clip(tiny_config):
    music = tone(3.0, 16_000, 330.0) * np.linspace(1.0, 0.5, 48_000, dtype=np.float32)
    later = np.concatenate([np.zeros(8_000, dtype=np.float32), music])
    assert np.array_equal(prepare(music, 16_000, tiny_config), prepare(later, 16_000, tiny_config))


def test_long_audio_is_cut_into_overlapping_windows(tiny_config):
    windows = prepare_windows(np.concatenate([np.zeros(4_000, np.float32), tone(9.0, 16_000)]), 16_000, tiny_config)
    assert windows.clips.shape == (4, tiny_config.n_samples)  # 9 s: windows at 0, 2, 4 and 6 s (padded)
    assert np.allclose(windows.starts, [0.25, 2.25, 4.25, 6.25], atol=1e-3)  # times in the given audio
    assert np.allclose(windows.ends - windows.starts, tiny_config.clip_seconds)
    assert np.allclose(np.sqrt(np.mean(windows.clips**2, axis=1)), TARGET_RMS, rtol=1e-3)
    assert prepare_windows(tone(9.0, 16_000), 16_000, tiny_config, max_windows=2).clips.shape[0] == 2
