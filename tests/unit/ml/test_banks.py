"""Sample-bank readers: the WebAudioFont sampler, the GUS patch and SoundFont 2 readers, the overlap guard."""

import base64

import numpy as np
import pytest
import soundfile

from service.ml.data import gus, overlap, tonejs, waf
from service.ml.data.banks import BANKS, TONEJS_ENV
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


def gus_patch(tmp_path, hz: float = 440.0, sixteen_bit: bool = True, program: int = 40):
    """A one-sample GUS patch of 0.5 s of a looped sine, rooted at ``hz``, in a freepats-like tree."""
    sine = np.sin(2 * np.pi * hz * np.arange(RATE // 2) / RATE)
    if sixteen_bit:
        data, mode, width = (0.5 * sine * 32767).astype("<i2").tobytes(), 1 | 4, 2
    else:
        data, mode, width = (0.5 * sine * 127).astype(np.int8).tobytes(), 4, 1
    loop = (RATE // 4 * width, (RATE // 4 + int(round(RATE / hz)) * 40) * width)
    header = gus.MAGIC + b"ID#000002\x00" + bytes(60) + bytes([1, 14, 0]) + bytes(2 + 2 + 4 + 36)
    instrument = bytes(2 + 16 + 4) + bytes([1]) + bytes(40)
    layer = bytes(6) + bytes([1]) + bytes(40)
    fields = gus.SAMPLE_HEADER.pack(b"sine\x00\x00\x00", 0, len(data), *loop, RATE, 8_176, 12_543_854, int(hz * 1000))
    sample = fields + bytes(gus.MODE_OFFSET - len(fields)) + bytes([mode]) + bytes(gus.SAMPLE_BYTES - 56)
    folder = tmp_path / "Tone_000"
    folder.mkdir(exist_ok=True)
    path = folder / f"{program:03d}_Test.pat"
    path.write_bytes(header + instrument + layer + sample + data)
    return path


@pytest.mark.parametrize("sixteen_bit", [True, False])
def test_gus_patches_play_at_their_pitch_and_loop(tmp_path, sixteen_bit):
    path = gus_patch(tmp_path, sixteen_bit=sixteen_bit)
    assert gus.patch_path(tmp_path, 40) == path and gus.patch_path(tmp_path, 41) is None
    (zone,) = gus.read_patch(path)
    assert zone.looped and zone.sample_rate == RATE and zone.root_cents == pytest.approx(6900, abs=0.1)
    assert zone.loop_start == RATE // 4 and (zone.key_low, zone.key_high) == (0, 127)
    audio = waf.render([NoteEvent(0.0, 1.5, 81, 1.0)], (zone,), RATE, 2 * RATE)
    assert abs(peak_hz(audio[:RATE]) - 880.0) < 10.0
    assert np.sqrt(np.mean(audio[int(0.9 * RATE) : int(1.4 * RATE)] ** 2)) > 0.1


def test_a_file_that_is_not_a_gus_patch_is_refused(tmp_path):
    path = tmp_path / "000_Bad.pat"
    path.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(ValueError, match="not a GUS patch"):
        gus.read_patch(path)


def tonejs_package(root, name: str, notes: dict[str, float], lead_silence: float = 0.05):
    """An npm-pack style tonejs-instruments package: one MP3 per note, each a sine after some silence."""
    folder = root / f"tonejs-instrument-{name}-mp3" / "package"
    folder.mkdir(parents=True)
    rate = 44_100
    for stem, hz in notes.items():
        tone = 0.3 * np.sin(2 * np.pi * hz * np.arange(rate) / rate)
        soundfile.write(folder / f"{stem}.mp3", np.concatenate([np.zeros(int(lead_silence * rate)), tone]), rate)
    return folder


def test_tonejs_note_names_are_midi_notes():
    assert [tonejs.note_number(s) for s in ("A3", "Cs4", "C-1", "B7")] == [57, 61, 0, 107]
    assert tonejs.note_number("F2 v2") is None and tonejs.note_number("index") is None


def test_tonejs_notes_become_pcm_zones_split_halfway_and_play_at_pitch(tmp_path):
    folder = tonejs_package(tmp_path, "cello", {"A3": 220.0, "C4": 261.63, "A4": 440.0, "A3 v2": 100.0})
    assert tonejs.package_dir(tmp_path, 42) == folder and tonejs.package_dir(tmp_path, 43) is None
    zones = tonejs.read_instrument(folder)
    assert [(z.key_low, z.key_high, z.root_cents) for z in zones] == [(0, 58, 5700), (59, 64, 6000), (65, 127, 6900)]
    assert all(z.is_pcm and z.sample_rate == tonejs.ZONE_RATE and not z.looped for z in zones)
    audio = zones[0].audio()
    assert np.abs(audio[:40]).max() > 0.05  # the leading silence (and the encoder's delay) is trimmed
    assert np.abs(audio).max() == pytest.approx(0.9, abs=0.01)
    played = waf.render([NoteEvent(0.0, 0.8, 69, 1.0)], zones, RATE, RATE)
    assert abs(peak_hz(played[: int(0.7 * RATE)]) - 440.0) < 10.0


def test_tonejs_bank_reads_its_folder_from_the_environment(tmp_path, monkeypatch):
    tonejs_package(tmp_path, "piano", {"C4": 261.63})
    monkeypatch.delenv(TONEJS_ENV, raising=False)
    assert not BANKS["tonejs"].available()
    monkeypatch.setenv(TONEJS_ENV, str(tmp_path))
    bank = BANKS["tonejs"]
    assert bank.available() and bank.has_program(0) and not bank.has_program(40)
    assert abs(peak_hz(bank.render([NoteEvent(0.0, 0.8, 60, 1.0)], 0, RATE, RATE)[: int(0.7 * RATE)]) - 261.6) < 10
