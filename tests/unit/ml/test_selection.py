"""Checkpoint selection never looks at a test bank or a training bank."""

import dataclasses

import pytest

from service.ml.audio import MelFrontEnd
from service.ml.config import PRESETS
from service.ml.training.selection import CheckpointSelector


@pytest.mark.parametrize("bank", ["fluidr3", "aspirin", "merlin"])
def test_a_test_or_training_bank_is_refused_for_selection(bank):
    preset = PRESETS["default"]
    preset = dataclasses.replace(preset, corpus=dataclasses.replace(preset.corpus, selection_bank=bank))
    with pytest.raises(ValueError, match="selection_bank"):
        CheckpointSelector(preset, MelFrontEnd(preset.model))


def test_without_a_selection_bank_the_last_checkpoint_is_kept():
    preset = PRESETS["tiny"]
    selector = CheckpointSelector(preset, MelFrontEnd(preset.model))
    assert not selector.active and selector.offer(None, 1, 1) == {}
