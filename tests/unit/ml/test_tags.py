import pytest

from service.ml.data.instruments import FAMILY_NAMES
from service.ml.errors import PromptError
from service.ml.tags import (
    SLOT_SIZES,
    SLOTS,
    SYNONYMS,
    known_tags,
    labels_to_slot_ids,
    normalise_tags,
    parse_prompt,
    with_instruments_of,
)


def test_parse_normalises_case_spacing_and_separators():
    parsed = parse_prompt(" Piano ,MINOR,  90 bpm, no-drums ")
    assert parsed.tags == ("piano", "minor", "90 bpm", "no drums")
    assert parsed.family == FAMILY_NAMES.index("piano") + 1
    assert parsed.mode == 2 and parsed.drums == 1
    assert parsed.tempo == 2  # 90 bpm is "medium"


def test_bpm_sets_tempo_class_and_bucket():
    slow = parse_prompt("62 bpm")
    assert slow.tempo == 1 and slow.bpm == 1
    fast = parse_prompt("synth lead, 175 bpm")
    assert fast.tempo == 3 and fast.bpm == SLOT_SIZES["bpm"] - 1


def test_empty_prompt_is_unconditional():
    assert parse_prompt("").slot_ids() == [0, 0, 0, 0, 0]
    assert parse_prompt(" , ").slot_ids() == [0, 0, 0, 0, 0]


def test_unknown_tag_suggests_closest_known():
    with pytest.raises(PromptError) as error:
        parse_prompt("pianno, minor")
    assert error.value.field == "prompt"
    assert "pianno" in str(error.value)
    assert error.value.suggestions[0] == "piano"


def test_unknown_tag_without_close_match_has_no_suggestions():
    with pytest.raises(PromptError) as error:
        parse_prompt("xyzzy")
    assert error.value.suggestions == []


def test_out_of_range_bpm_names_range():
    with pytest.raises(PromptError, match=r"\[60, 180\]"):
        parse_prompt("piano, 240 bpm")


def test_conflicting_tags_are_rejected():
    with pytest.raises(PromptError, match="conflict"):
        parse_prompt("piano, organ")
    with pytest.raises(PromptError, match="conflict"):
        parse_prompt("slow, 170 bpm")


def test_known_tags_cover_families_modes_tempi():
    tags = known_tags()
    assert set(FAMILY_NAMES) <= set(tags)
    assert {"major", "minor", "slow", "medium", "fast", "drums", "no drums", "120 bpm"} <= set(tags)
    assert len(FAMILY_NAMES) >= 12
    for tag in tags:
        parse_prompt(tag)


def test_labels_match_prompt_ids():
    assert labels_to_slot_ids("piano", "minor", 90, False) == parse_prompt("piano, minor, 90 bpm, no drums").slot_ids()


def test_non_string_prompt_is_rejected():
    with pytest.raises(PromptError):
        parse_prompt(42)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("cello, sad", ("strings", "minor")),
        ("Violin,  Happy", ("strings", "major")),
        ("double bass, upbeat", ("bass", "fast")),
        ("trumpet, dark, percussion", ("brass", "minor", "drums")),
        ("Alto-Sax, without drums", ("reed", "no drums")),
        ("marimba", ("mallet",)),
        ("harp, adagio", ("plucked", "slow")),
        ("90bpm", ("90 bpm",)),
        ("piano, keys, PIANO", ("piano",)),  # synonyms and repeats of one tag collapse
    ],
)
def test_synonyms_and_spellings_map_onto_the_canonical_tags(typed, canonical):
    parsed = parse_prompt(typed)
    assert parsed.tags == canonical
    assert parsed.slot_ids() == parse_prompt(", ".join(canonical)).slot_ids()


def test_synonyms_never_change_the_slots_trained_checkpoints_depend_on():
    assert SLOTS == ("family", "mode", "tempo", "bpm", "drums")
    assert set(SYNONYMS.values()) <= set(known_tags())
    assert not set(SYNONYMS) & set(known_tags())  # a synonym never shadows a canonical tag


def test_a_synonym_conflicting_with_a_tag_names_what_was_typed():
    with pytest.raises(PromptError, match="'happy' in prompt conflict"):
        parse_prompt("minor, happy")


def test_unknown_tag_points_to_the_vocabulary_route_and_suggests_synonyms():
    with pytest.raises(PromptError) as error:
        parse_prompt("celo")
    assert "GET /v1/tags" in str(error.value) and "known_tags()" not in str(error.value)
    assert "cello" in error.value.suggestions


def test_normalise_tags_folds_case_spacing_synonyms_and_duplicates():
    assert normalise_tags([" Sad ", "minor", "90BPM", "lo_fi", "", "Lo-Fi"]) == ["minor", "90 bpm", "lo fi"]


def test_a_transfer_takes_the_other_clips_instruments_only():
    assert with_instruments_of(["piano", "minor", "80 bpm"], ["cello", "major", "drums"]) == [
        "minor",
        "80 bpm",
        "strings",
    ]
    assert with_instruments_of(["Piano", "minor"], ["sad"]) == ["minor"]  # a neighbour without an instrument tag
