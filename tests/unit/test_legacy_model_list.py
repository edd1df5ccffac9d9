"""The legacy ``model.list`` parser and the old tool's alias-collision rule (pure logic, real files)."""

from pathlib import Path, PurePosixPath

import pytest

from service.domain.models import legacy_model_list as legacy
from service.domain.models.registry import alias_problem, first_free

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_models" / "model.list"


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    for name in ("a.yaml", "b.yaml", "deep/piano/v2.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("name: x\n")
    return tmp_path


def parse(text: str | bytes, base: Path) -> legacy.ParsedList:
    return legacy.parse_legacy_list(text.encode() if isinstance(text, str) else text, base)


def only_error(parsed: legacy.ParsedList) -> str:
    assert len(parsed.errors) == 1, parsed.errors
    return str(parsed.errors[0])


def test_valid_lines_become_entries(configs):
    parsed = parse("m1 acme/one main a.yaml one READY\nm2 local imported b.yaml two RUNNING\n", configs)
    assert parsed.errors == []
    first, second = parsed.entries
    assert (first.model_id, first.author_repo, first.branch, first.alias, first.status) == (
        "m1",
        "acme/one",
        "main",
        "one",
        "READY",
    )
    assert first.resolved_path == configs / "a.yaml" and first.source_type == "remote"
    assert second.is_local and second.source_type == "imported" and second.registry_author_repo is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"\n\n  \n", "the file is empty"),
        (b"m1 acme main a.yaml one READY\n\x00\x01\x02binary", "binary file (NUL byte at offset 30)"),
        (b"\xff\xfe m1 acme main", "not UTF-8 text (invalid byte at offset 0)"),
    ],
)
def test_unusable_files(configs, content, reason):
    parsed = parse(content, configs)
    assert parsed.entries == []
    assert reason in only_error(parsed)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("m1\tacme main a.yaml one READY", "line 1: tab at column 3: fields are separated by single spaces"),
        ("m1 acme main a.yaml one READY ", "line 1: trailing space"),
        (" m1 acme main a.yaml one READY", "line 1: leading space"),
        ("m1 acme  main a.yaml one READY", "two spaces in a row at column 8 (an empty field)"),
        (
            "m1 acme main a.yaml one",
            "expected 6 fields (model_id author_repo_id branch_name path_to_model_yaml model_alias status), found 5",
        ),
        ("m1 local imported a.yaml one", "a local imported model still needs its status"),
        ("m1 acme main a.yaml one READY extra", "found 7"),
        ("m1 acme main a.yaml one STOPPED", "unknown status 'STOPPED': expected READY or RUNNING"),
        ("m1 acme main a.yaml one ready", "(statuses are upper case)"),
        ("m1 acme main missing.yaml one READY", "config file not found: "),
        ("m1 acme main a.yaml o\x07ne READY", "control character U+0007 at column 22"),
    ],
)
def test_malformed_lines_name_the_line_and_reason(configs, line, reason):
    parsed = parse(line + "\n", configs)
    assert parsed.entries == []
    assert reason in only_error(parsed)


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf"], ids=["plain", "utf8-bom"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_windows_lists_with_crlf_and_a_byte_order_mark_are_read(configs, prefix, final_newline):
    """Cortex writes its list on Windows in text mode: CRLF endings, sometimes a BOM, maybe no final newline."""
    text = b"m1 acme/one main a.yaml one READY\r\n\r\nm2 local imported b.yaml two RUNNING" + (
        b"\r\n" if final_newline else b""
    )
    parsed = parse(prefix + text, configs)
    assert parsed.errors == []
    entries = [(e.line, e.model_id, e.alias, e.status) for e in parsed.entries]
    assert entries == [(1, "m1", "one", "READY"), (3, "m2", "two", "RUNNING")]
    assert parsed.entries[1].resolved_path == configs / "b.yaml" and parsed.blank_lines == [2]


TWO_LINES = b"m1 acme main a.yaml one READY%sm2 acme main b.yaml two READY%s"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (TWO_LINES % (b"\n", b"\r\n"), "line 2: mixed line endings: this line ends with CRLF, the first line with LF"),
        (TWO_LINES % (b"\r\n", b"\n"), "line 2: mixed line endings: this line ends with LF, the first line with CRLF"),
        (TWO_LINES % (b"\r", b"\r"), "control character U+000D"),
        (b"m1 acme main a.yaml one READY\r\r\n", "control character U+000D at column 30"),
        (b"\xef\xbb\xbf\xef\xbb\xbfm1 acme main a.yaml one READY\r\n", "control character U+FEFF at column 1"),
    ],
    ids=["crlf-in-lf-file", "lf-in-crlf-file", "old-mac-cr", "double-cr", "second-bom"],
)
def test_malformed_line_endings_are_still_refused(configs, content, reason):
    parsed = parse(content, configs)
    assert reason in "; ".join(str(e) for e in parsed.errors)


def test_duplicate_ids_and_alias_equal_to_another_id(configs):
    parsed = parse(
        "m1 acme main a.yaml one READY\n"
        "m2 acme main b.yaml m1 READY\n"
        "m1 acme main b.yaml three READY\n"
        "m3 acme main a.yaml m3 READY\n",
        configs,
    )
    errors = [str(e) for e in parsed.errors]
    assert errors == [
        "line 2: alias 'm1' is the model_id of line 1: references would be ambiguous",
        "line 3: duplicate model_id 'm1' (first on line 1)",
    ]
    assert [e.line for e in parsed.entries] == [1, 4]  # an alias equal to its own id is fine


def test_every_line_is_checked_and_blank_lines_are_ignored(configs):
    parsed = parse("m1 acme main a.yaml one READY\n\nbad\nm2 acme main b.yaml two BAD\n", configs)
    assert [e.line for e in parsed.errors] == [3, 4]
    assert parsed.blank_lines == [2] and parsed.line_count == 4
    assert [e.line for e in parsed.entries] == [1]


def test_fixture_file_reports_each_broken_line():
    parsed = legacy.read_legacy_list(FIXTURE)
    assert [e.line for e in parsed.entries] == list(range(1, 10))
    assert [e.line for e in parsed.errors] == list(range(11, 21))
    assert parsed.blank_lines == [10]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/models/Acme/Piano/V2.yaml", ["v2", "piano:v2", "acme:piano/v2"]),
        ("/v2.yaml", ["v2"]),
        ("/x/My Model.YAML", ["my-model", "x:my-model"]),
    ],
)
def test_alias_candidates_follow_the_old_rule(path, expected):
    assert legacy.alias_candidates(PurePosixPath(path)) == expected


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (set(), "v2"),
        ({"v2"}, "piano:v2"),
        ({"v2", "piano:v2"}, "deep:piano/v2"),
        ({"v2", "piano:v2", "deep:piano/v2"}, "v2-1"),
        ({"v2", "piano:v2", "deep:piano/v2", "v2-1", "v2-2"}, "v2-3"),
    ],
)
def test_collision_resolution_order(taken, expected):
    assert legacy.resolve_collision(PurePosixPath("/deep/piano/v2.yaml"), taken) == expected


def test_all_digit_file_names_are_not_used_as_aliases():
    assert legacy.resolve_collision(PurePosixPath("/2024.yaml"), set()) == "model-2024"


def test_plan_keeps_free_aliases_first_and_renames_against_ids_and_aliases(configs):
    parsed = parse(
        "m1 acme main deep/piano/v2.yaml taken READY\n"  # alias held by a registered model
        "m2 acme main a.yaml v2 READY\n"  # keeps v2 although line 1 would want it
        "m3 acme main b.yaml m9 RUNNING\n"  # m9 is a registered model's id
        "m4 acme main a.yaml a READY\n",
        configs,
    )
    planned, conflicts = legacy.plan_import(parsed.entries, {}, {"taken", "m9"})
    assert conflicts == []
    assert [(p.entry.line, p.alias) for p in planned] == [(1, "piano:v2"), (2, "v2"), (3, "b"), (4, "a")]
    assert planned[2].status == "READY" and planned[2].entry.status == "RUNNING"
    assert "is the alias or id of a registered model" in planned[0].note


def test_alias_rules():
    assert alias_problem("piano:v2") is None and alias_problem("acme:piano/v2-1") is None
    assert "digits" in alias_problem("123")
    assert "empty" in alias_problem("")
    assert alias_problem("has space") and alias_problem("-lead") and alias_problem("x" * 101)
    assert first_free("a", {"a", "a-1"}) == "a-2" and first_free("b", {"a"}) == "b"
