"""Sample-bank readers: the WebAudioFont sampler, the SoundFont 2 reader and the overlap guard."""

import base64

import numpy as np
import pytest

from service.ml.data import overlap, waf
from service.ml.data.banks import BANKS
from service.ml.data.music import NoteEvent
from service.ml.data.sf2 import SoundFont2

RATE = 16_000


def sine_preset(tmp_path, hz: float = 440.0, root_midi: int = 69, loop: bool = True):
    """A one-zone WebAudioFont preset file holding 0.5 s of a sine as base64 16-bit PCM."""
    samples = (0.5 * np.sin(2 * np.pi * hz * np.arange(RATE // 2) / RATE) * 32767).astype("<i2")
    loop_start, loop_end = (RATE // 4, RATE // 4 + int(round(RATE / hz)) * 40) if loop else (0, 0)
    payload = base64.b64encode(samples.tobytes()).decode()
    text = (
        f"var _tone_0000_Test_sf2_file={{zones:[{{midi:0,originalPitch:{root_midi * 100},keyRangeLow:0,"
        f"keyRangeHigh:127,loopStart:{loop_start},loopEnd:{loop_end},coarseTune:0,fineTune:0,sampleRate:{RATE},"
        f"ahdsr:true,sample:'{payload}'}}]}};"
    )
    (tmp_path / "sound").mkdir(exist_ok=True)
    path = tmp_path / "sound" / "0000_Test_sf2_file.js"
    path.write_text(text)
    return path


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1.0 / RATE)[np.argmax(spectrum)])


def test_preset_is_found_and_parsed(tmp_path):
    path = sine_preset(tmp_path)
    assert waf.preset_path(tmp_path, "Test", 0) == path
    assert waf.preset_path(tmp_path, "Test", 1) is None
    (zone,) = waf.read_preset(path)
    assert zone.is_pcm and zone.looped and zone.sample_rate == RATE and zone.root_cents == 6900


def test_notes_play_at_their_pitch_and_loop_while_held(tmp_path):
    zones = waf.read_preset(sine_preset(tmp_path))
    audio = waf.render([NoteEvent(0.0, 1.5, 81, 1.0)], zones, RATE, 2 * RATE)  # an octave above the root
    assert abs(peak_hz(audio[:RATE]) - 880.0) < 10.0
    held = audio[int(0.9 * RATE) : int(1.4 * RATE)]
    assert np.sqrt(np.mean(held**2)) > 0.1  # the 0.5 s sample loops for a 1.5 s note
    assert np.sqrt(np.mean(audio[int(1.9 * RATE) :] ** 2)) < 0.01  # and is released


def test_unlooped_samples_end_with_their_data(tmp_path):
    zones = waf.read_preset(sine_preset(tmp_path, loop=False))
    audio = waf.render([NoteEvent(0.0, 1.5, 69, 1.0)], zones, RATE, 2 * RATE)
    assert np.all(audio[int(0.6 * RATE) :] == 0.0)


def test_soundfont_reader_sees_programs_and_samples():
    font = SoundFont2(BANKS["merlin"].path())
    programs = font.program_samples()
    assert set(range(128)) <= set(programs) and all(programs[p] for p in (0, 40, 73))
    header = font.samples[next(iter(programs[0]))]
    assert header.sample_rate > 0 and header.end > header.start
    assert len(font.sample_digest(0)) == 40


def test_overlap_guard_finds_the_samples_merlin_and_timgm6mb_share():
    kept, dropped = overlap.clean_programs(BANKS["timgm6mb"], [BANKS["merlin"]])
    assert len(dropped) == 35  # of the 72 programs the families render, 35 play a Merlin sample in TimGM6mb
    assert not set(kept) & set(dropped)
    assert overlap.clean_programs(BANKS["merlin"], [])[1] == {}


@pytest.mark.parametrize("name", ["merlin", "timgm6mb"])
def test_pip_banks_are_available_everywhere(name):
    assert BANKS[name].available()
