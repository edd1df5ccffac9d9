"""Importing a legacy ``model.list`` into the registry: validate every line, plan, back up, write once.

Format: one model per line, six fields separated by single spaces::

    model_id author_repo_id branch_name path_to_model_yaml model_alias status

``status`` is READY or RUNNING (a RUNNING left by a dead process imports as READY). Imported local models read
``<model-id> local imported <path.yaml> <alias> <status>``. Relative config paths are relative to the list file.
Line endings may be LF or CRLF (Cortex on Windows writes CRLF), as long as every line ends like the first; a
UTF-8 byte-order mark is ignored.

The import is all or nothing: every line is checked first (with line numbers and reasons) and any invalid line
stops it unless ``skip_invalid``; a backup is taken before the first write; the rows go in one transaction; if
anything fails after the backup the database is restored from it. Re-running the same file changes nothing.

Alias collisions (an alias already taken by another model's alias or id, twice in the file, or unusable) follow
the old tool's rule: the lowercase config file name without extension, then ``parent:name``, then
``grandparent:parent/name``, then ``name-1``, ``name-2``, … until unique against every id and alias.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.recovery import backup as backups
from service.db.schema.models import Model
from service.domain.models import registry
from service.tables import format_table

FIELDS = ("model_id", "author_repo_id", "branch_name", "path_to_model_yaml", "model_alias", "status")
STATUS_MAP = {"READY": registry.READY, "RUNNING": registry.READY}
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")  # and invisible marks inside a line
ALIAS_PART = re.compile(r"[^a-z0-9._+@-]+")


@dataclass(frozen=True)
class LegacyEntry:
    line: int
    model_id: str
    author_repo: str
    branch: str
    config_path: str  # as written in the file
    alias: str
    status: str
    resolved_path: Path

    @property
    def is_local(self) -> bool:
        return (self.author_repo, self.branch) == ("local", "imported")

    @property
    def source_type(self) -> str:
        return "imported" if self.is_local else "remote"

    @property
    def registry_author_repo(self) -> str | None:
        return None if self.is_local else self.author_repo


@dataclass(frozen=True)
class LineError:
    line: int | None  # None: the file as a whole
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


@dataclass
class ParsedList:
    source: Path
    entries: list[LegacyEntry] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    blank_lines: list[int] = field(default_factory=list)
    line_count: int = 0


# -- parsing ---------------------------------------------------------------------------------------------------


def read_legacy_list(path: Path) -> ParsedList:
    path = Path(path)
    if not path.is_file():
        raise registry.RegistryError(f"no legacy model list at {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise registry.RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_legacy_list(data, path.resolve().parent, source=path)


def parse_legacy_list(data: bytes, base_dir: Path, source: Path = Path("model.list")) -> ParsedList:
    """Check every line of a ``model.list``; valid lines become entries, the rest errors with reasons."""
    parsed = ParsedList(source=source)
    if not data.strip():
        parsed.errors.append(LineError(None, "the file is empty: no model lines"))
        return parsed
    nul = data.find(b"\x00")
    if nul >= 0:
        parsed.errors.append(LineError(None, f"binary file (NUL byte at offset {nul}), not a model list"))
        return parsed
    try:
        content = data.decode("utf-8-sig")  # a byte-order mark (Windows editors write one) is dropped
    except UnicodeDecodeError as exc:
        parsed.errors.append(LineError(None, f"not UTF-8 text (invalid byte at offset {exc.start}), not a model list"))
        return parsed

    lines, ending = _lines(content)
    parsed.line_count = len(lines)
    candidates: list[LegacyEntry] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.removesuffix("\n").removesuffix("\r")
        if text == "":
            parsed.blank_lines.append(number)
            continue
        reasons = _ending_problems(raw, ending) + _structure_problems(text)
        if reasons:
            parsed.errors.append(LineError(number, "; ".join(reasons)))
            continue
        model_id, author_repo, branch, config_path, alias, status = text.split(" ")
        resolved = (base_dir / Path(config_path).expanduser()).resolve()
        candidates.append(LegacyEntry(number, model_id, author_repo, branch, config_path, alias, status, resolved))

    first_line_of_id: dict[str, int] = {}
    for entry in candidates:
        first_line_of_id.setdefault(entry.model_id, entry.line)
    for entry in candidates:
        reasons = []
        if first_line_of_id[entry.model_id] != entry.line:
            reasons.append(f"duplicate model_id {entry.model_id!r} (first on line {first_line_of_id[entry.model_id]})")
        owner_line = first_line_of_id.get(entry.alias)
        if owner_line is not None and entry.alias != entry.model_id:
            reasons.append(f"alias {entry.alias!r} is the model_id of line {owner_line}: references would be ambiguous")
        if entry.status not in STATUS_MAP:
            hint = " (statuses are upper case)" if entry.status.upper() in STATUS_MAP else ""
            reasons.append(f"unknown status {entry.status!r}: expected READY or RUNNING{hint}")
        if not entry.resolved_path.is_file():
            reasons.append(f"config file not found: {entry.resolved_path}")
        if reasons:
            parsed.errors.append(LineError(entry.line, "; ".join(reasons)))
        else:
            parsed.entries.append(entry)
    parsed.errors.sort(key=lambda e: e.line or 0)
    return parsed


ENDING_NAMES = {"\n": "LF", "\r\n": "CRLF"}


def _lines(content: str) -> tuple[list[str], str]:
    """The lines split at LF, each keeping its ending (none for an unterminated last line), and the file's line
    ending, set by its first line: Cortex on Windows writes the list in text mode (CRLF), Unix tools LF."""
    parts = content.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    ending = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    return lines, ending


def _ending_problems(raw: str, ending: str) -> list[str]:
    own = "\r\n" if raw.endswith("\r\n") else "\n" if raw.endswith("\n") else ending  # unterminated: any
    if own == ending:
        return []
    return [f"mixed line endings: this line ends with {ENDING_NAMES[own]}, the first line with {ENDING_NAMES[ending]}"]


def _structure_problems(raw: str) -> list[str]:
    reasons = []
    if "\t" in raw:
        reasons.append(f"tab at column {raw.index(chr(9)) + 1}: fields are separated by single spaces")
    control = CONTROL_CHARS.search(raw.replace("\t", " "))
    if control:
        reasons.append(f"control character U+{ord(control.group()):04X} at column {control.start() + 1}")
    if raw != raw.rstrip(" "):
        reasons.append("trailing space")
    if raw != raw.lstrip(" "):
        reasons.append("leading space")
    inner = raw.strip(" ")
    if "  " in inner:
        reasons.append(f"two spaces in a row at column {raw.index('  ') + 1} (an empty field)")
    fields = raw.split()
    if len(fields) != len(FIELDS):
        reason = f"expected {len(FIELDS)} fields ({' '.join(FIELDS)}), found {len(fields)}"
        if len(fields) == 5 and fields[1:3] == ["local", "imported"]:
            reason += " (a local imported model still needs its status, READY or RUNNING, as the sixth field)"
        reasons.append(reason)
    return reasons


# -- the alias rule --------------------------------------------------------------------------------------------


def _alias_part(name: str) -> str:
    return ALIAS_PART.sub("-", name.lower()).strip("-")


def alias_candidates(config_path: PurePath) -> list[str]:
    """The old tool's names for a model, in order: ``name``, ``parent:name``, ``grandparent:parent/name``."""
    name = _alias_part(config_path.stem) or "model"
    parent = _alias_part(config_path.parent.name)
    grandparent = _alias_part(config_path.parent.parent.name)
    candidates = [name]
    if parent:
        candidates.append(f"{parent}:{name}")
        if grandparent:
            candidates.append(f"{grandparent}:{parent}/{name}")
    return candidates


def resolve_collision(config_path: PurePath, taken: set[str]) -> str:
    """The first of the old tool's names that is a usable alias and not in ``taken``."""
    candidates = alias_candidates(config_path)
    for candidate in candidates:
        if registry.alias_problem(candidate) is None and candidate not in taken:
            return candidate
    base = candidates[0] if registry.alias_problem(candidates[0]) is None else f"model-{candidates[0]}"
    return registry.first_free(base, taken)


# -- planning --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedModel:
    entry: LegacyEntry
    alias: str
    action: str  # "import" or "unchanged"
    note: str = ""  # why the alias differs from the file's

    @property
    def status(self) -> str:
        return STATUS_MAP[self.entry.status]


def plan_import(
    entries: list[LegacyEntry], existing: dict[str, Model], taken: set[str]
) -> tuple[list[PlannedModel], list[LineError]]:
    """Decide, line by line, what the import does: keep a registered model, or import under which alias.

    ``existing`` maps source ids already in the registry to their rows; ``taken`` holds every alias and source
    id in the registry. A model_id registered with different fields is a conflict, never overwritten.
    """
    planned: dict[int, PlannedModel] = {}
    conflicts: list[LineError] = []
    file_ids = {e.model_id: e.line for e in entries}
    holder = {name: "the alias or id of a registered model" for name in taken}  # name -> who holds it, for the report
    holder.update({model_id: f"the model_id of line {line}" for model_id, line in file_ids.items()})
    fresh: list[LegacyEntry] = []
    for entry in entries:
        row = existing.get(entry.model_id)
        if row is None and entry.model_id in taken:
            conflicts.append(
                LineError(
                    entry.line,
                    f"model_id {entry.model_id!r} is the alias of a registered model: "
                    "references would be ambiguous (rename that model first with `soundalike models alias`)",
                )
            )
            continue
        if row is None:
            fresh.append(entry)
            continue
        differences = _differences(entry, row)
        if differences:
            conflicts.append(
                LineError(
                    entry.line,
                    f"model_id {entry.model_id!r} is already registered (model {row.id}, alias {row.alias!r}) with "
                    f"different {'; '.join(differences)}: not overwritten",
                )
            )
        else:
            planned[entry.line] = PlannedModel(entry, row.alias, "unchanged", "already registered")

    # First the aliases that are free keep them (in file order), then the rest are renamed by the rule.
    renamed: list[tuple[LegacyEntry, str]] = []
    for entry in fresh:
        problem = registry.alias_problem(entry.alias)
        other_holder = holder.get(entry.alias)
        if problem:
            renamed.append((entry, f"alias {entry.alias!r} {problem}"))
        elif other_holder and other_holder != f"the model_id of line {entry.line}":
            renamed.append((entry, f"alias {entry.alias!r} is {other_holder}"))
        else:
            holder[entry.alias] = f"the alias of line {entry.line}"
            planned[entry.line] = PlannedModel(entry, entry.alias, "import")
    for entry, why in renamed:
        alias = resolve_collision(entry.resolved_path, set(holder))
        holder[alias] = f"the alias of line {entry.line}"
        planned[entry.line] = PlannedModel(entry, alias, "import", why)
    return [planned[line] for line in sorted(planned)], conflicts


def _differences(entry: LegacyEntry, row: Model) -> list[str]:
    wanted = {
        "source type": (row.source_type, entry.source_type),
        "author_repo": (row.author_repo, entry.registry_author_repo),
        "branch": (row.version, entry.branch),
        "config path": (row.config_path, str(entry.resolved_path)),
    }
    return [f"{name} ({have} ≠ {want})" for name, (have, want) in wanted.items() if have != want]


# -- the import ------------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    parsed: ParsedList
    planned: list[PlannedModel] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    dry_run: bool = False
    skip_invalid: bool = False
    outcome: str = ""  # refused | dry-run | unchanged | imported | failed
    backup: Path | None = None
    new_default: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("dry-run", "unchanged", "imported")

    @property
    def to_import(self) -> list[PlannedModel]:
        return [p for p in self.planned if p.action == "import"]


async def import_legacy_list(
    session: AsyncSession,
    parsed: ParsedList,
    *,
    migration_url: str,
    backup_dir: Path,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import ``parsed`` (see the module docstring); the report says what happened, ``report.ok`` whether it did.

    ``migration_url`` (the owner role) takes the backup and, on failure, restores it.
    """
    report = ImportReport(parsed=parsed, dry_run=dry_run, skip_invalid=skip_invalid)
    await registry.lock_registry(session)
    source_ids = [e.model_id for e in parsed.entries]
    rows = await session.scalars(select(Model).where(Model.source_id.in_(source_ids)))
    existing = {row.source_id: row for row in rows}
    report.planned, conflicts = plan_import(parsed.entries, existing, await registry.taken_names(session))
    report.errors = sorted(parsed.errors + conflicts, key=lambda e: e.line or 0)
    conflict_lines = {c.line for c in conflicts}
    report.planned = [p for p in report.planned if p.entry.line not in conflict_lines]
    no_default = await registry.default_model(session) is None

    if report.errors and not skip_invalid:
        await session.rollback()
        why = f"{_count(report.errors, 'invalid line')}: nothing was imported"
        return _finish(report, "refused", why + " (fix the file, or pass --skip-invalid to import the valid lines)")
    if not report.planned:
        await session.rollback()
        return _finish(report, "refused", "nothing to import: the file has no valid model lines")
    if no_default and report.to_import:
        report.new_default = report.to_import[0].alias
    if dry_run:
        await session.rollback()
        return _finish(report, "dry-run", f"dry run: would import {_count(report.to_import, 'model')}; nothing written")
    if not report.to_import:
        await session.rollback()
        unchanged = sum(p.action == "unchanged" for p in report.planned)
        why = f"nothing to import: {_count(unchanged, 'model')} in the file already registered; no changes made"
        return _finish(report, "unchanged", why)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    try:
        info = await asyncio.to_thread(
            backups.backup, migration_url, Path(backup_dir) / f"before-import-list-{stamp}.dump"
        )
    except Exception as exc:
        await session.rollback()
        return _finish(report, "failed", f"could not take the backup in {backup_dir} ({exc}): nothing was written")
    report.backup = info.path
    current_line = None
    try:
        for done, plan in enumerate(report.to_import, start=1):
            current_line = plan.entry.line
            session.add(_row(plan, parsed.source))
            await session.flush()
            if progress:
                progress(done, len(report.to_import))
        current_line = None
        if report.new_default:
            await registry.set_default(session, report.new_default)
        await session.commit()
    except Exception as exc:
        where = f" at line {current_line}" if current_line else ""
        await session.rollback()
        try:
            await asyncio.to_thread(backups.restore, migration_url, report.backup)
        except Exception as restore_exc:
            why = (
                f"import failed{where} ({exc}); RESTORING THE BACKUP ALSO FAILED ({restore_exc}): "
                f"restore it by hand with `soundalike restore {report.backup}`"
            )
            return _finish(report, "failed", why)
        why = f"import failed{where} ({exc}); the database was restored from the backup {report.backup}"
        return _finish(report, "failed", why + ": nothing was imported")
    message = f"imported {_count(report.to_import, 'model')} in one transaction (backup taken before: {info.path})"
    return _finish(report, "imported", message)


def _row(plan: PlannedModel, source: Path) -> Model:
    entry = plan.entry
    return Model(
        source_id=entry.model_id,
        alias=plan.alias,
        source_type=entry.source_type,
        author_repo=entry.registry_author_repo,
        version=entry.branch,
        config_path=str(entry.resolved_path),
        status=plan.status,
        metadata_={
            "legacy": {
                "file": str(Path(source).resolve()),
                "line": entry.line,
                "alias": entry.alias,
                "status": entry.status,
                "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        },
    )


def _count(items, noun: str) -> str:
    n = items if isinstance(items, int) else len(items)
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _finish(report: ImportReport, outcome: str, message: str) -> ImportReport:
    report.outcome, report.message = outcome, message
    return report


def format_report(report: ImportReport) -> str:
    """The report an operator reads: the file, every invalid line with its reason, the mapping, the outcome."""
    parsed = report.parsed
    out = [f"Legacy model list: {parsed.source}"]
    counts = [_count(parsed.line_count, "line"), f"{len(parsed.entries)} valid"]
    if parsed.errors:
        counts.append(f"{len(parsed.errors)} invalid")
    if parsed.blank_lines:
        counts.append(f"{_count(parsed.blank_lines, 'blank line')} ignored")
    out.append("  " + ", ".join(counts))
    if report.errors:
        verdict = "skipped with --skip-invalid" if report.skip_invalid else "nothing is imported while any remain"
        out += ["", f"Invalid lines ({verdict}):"]
        out += [f"  {error}" for error in report.errors]
    if report.planned and report.outcome != "refused":
        rows = []
        for plan in report.planned:
            entry = plan.entry
            status = entry.status if entry.status == plan.status else f"{entry.status} -> {plan.status}"
            action = plan.action + (f" ({plan.note})" if plan.note and plan.action == "import" else "")
            rows.append([entry.line, entry.model_id, entry.alias, plan.alias, status, action])
        headers = ["line", "model_id", "alias in file", "registry alias", "status", "action"]
        out += ["", "Mapping:", format_table(headers, rows, indent="  ")]
    if report.new_default and report.outcome in ("imported", "dry-run"):
        verb = "becomes" if report.outcome == "imported" else "would become"
        out += ["", f"There was no default model: {report.new_default!r} {verb} the default."]
    out += ["", f"Result: {report.message}"]
    return "\n".join(out)
