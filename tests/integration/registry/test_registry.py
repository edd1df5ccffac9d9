"""The registry against the real database: defaults, aliases, archiving, built-in registration, statuses."""

import asyncio

import pytest
from sqlalchemy import func, select

from service.db.schema.models import Generation, Model
from service.domain.models import registry
from service.domain.models.registry import ModelSpec


async def default_count(session) -> int:
    return await session.scalar(select(func.count()).where(Model.is_default))


async def test_builtin_registration_is_idempotent(session, checkpoint):
    path = checkpoint("default.pt")
    first = await registry.register_builtin(session, path, version="v1", spec=ModelSpec(512, 32000, 10.0))
    await session.commit()
    again = await registry.register_builtin(session, path, version="v1")
    await session.commit()
    assert first.created and not again.created and "already registered" in again.note
    assert again.model.id == first.model.id
    rows = await registry.list_models(session)
    assert len(rows) == 1
    row = rows[0]
    assert (row.alias, row.source_type, row.version, row.is_default, row.status) == (
        "default",
        "builtin",
        "v1",
        True,
        "READY",
    )
    assert row.checkpoint_sha256 == registry.sha256_file(path) and row.sample_rate == 32000
    assert row.source_id.startswith("builtin-default@")


async def test_new_builtin_version_takes_alias_and_default_and_keeps_the_old_one(session, checkpoint):
    old = (await registry.register_builtin(session, checkpoint("v1.pt"), version="v1")).model
    await session.commit()
    new = await registry.register_builtin(session, checkpoint("v2.pt"), version="v2")
    await session.commit()
    assert new.created and new.model.alias == "default" and new.model.is_default
    await session.refresh(old)
    assert old.alias == f"default-{old.checkpoint_sha256[:8]}" and not old.is_default
    assert await default_count(session) == 1
    assert (await registry.resolve_alias(session, None)).id == new.model.id


async def test_builtin_does_not_take_the_default_an_operator_chose(session, checkpoint):
    await registry.register_builtin(session, checkpoint("v1.pt"))
    chosen = await registry.add_model(session, checkpoint("mine.pt"), "mine", make_default=True)
    await session.commit()
    await registry.register_builtin(session, checkpoint("v2.pt"))
    await session.commit()
    assert (await registry.default_model(session)).id == chosen.id
    assert await default_count(session) == 1


async def test_first_model_becomes_default_then_exactly_one(session, checkpoint):
    a = await registry.add_model(session, checkpoint("a.pt"), "a")
    b = await registry.add_model(session, checkpoint("b.pt"), "b", version="2024-06")
    await session.commit()
    assert a.is_default and not b.is_default and b.version == "2024-06" and b.source_type == "local"
    await registry.set_default(session, "b")
    await session.commit()
    await session.refresh(a)
    assert not a.is_default and (await registry.default_model(session)).id == b.id
    assert await default_count(session) == 1


@pytest.mark.parametrize(
    ("alias", "error", "fragment"),
    [
        ("a", registry.ModelConflict, "'a' is already the alias of model"),
        ("local:", registry.InvalidModelInput, None),
        ("has space", registry.InvalidModelInput, "alias: 'has space' must start with"),
        ("42", registry.InvalidModelInput, "must not be all digits"),
    ],
)
async def test_add_refuses_bad_or_taken_aliases(session, checkpoint, alias, error, fragment):
    first = await registry.add_model(session, checkpoint("a.pt"), "a")
    await session.commit()
    if alias == "local:":
        alias = first.source_id  # an alias equal to another model's id
        error, fragment = registry.ModelConflict, "is already the source id of model"
    with pytest.raises(error, match=fragment):
        await registry.add_model(session, checkpoint("b.pt"), alias)


async def test_add_refuses_missing_files_and_registered_checkpoints(session, checkpoint, tmp_path):
    with pytest.raises(registry.InvalidModelInput, match="checkpoint_path: no file at") as caught:
        await registry.add_model(session, tmp_path / "nope.pt", "x")
    assert caught.value.field == "checkpoint_path"
    await registry.add_model(session, checkpoint("a.pt", b"same"), "a")
    await session.commit()
    with pytest.raises(registry.ModelConflict, match="already registered as 'a'"):
        await registry.add_model(session, checkpoint("copy.pt", b"same"), "b")
    with pytest.raises(registry.InvalidModelInput, match="latent_dim"):
        await registry.add_model(session, checkpoint("c.pt"), "c", spec=ModelSpec(latent_dim=0))


async def test_rename_checks_aliases_and_ids(session, checkpoint):
    a = await registry.add_model(session, checkpoint("a.pt"), "a")
    await registry.add_model(session, checkpoint("b.pt"), "b")
    await session.commit()
    with pytest.raises(registry.ModelConflict, match="'b' is already the alias"):
        await registry.rename(session, "a", "b")
    renamed = await registry.rename(session, "a", "piano:v2")
    await session.commit()
    assert renamed.id == a.id and (await registry.get_model(session, "piano:v2")).id == a.id
    with pytest.raises(registry.ModelNotFound, match="no model 'a'"):
        await registry.get_model(session, "a")


async def test_resolve_by_alias_source_id_id_or_default(session, checkpoint):
    a = await registry.add_model(session, checkpoint("a.pt"), "a")
    b = await registry.add_model(session, checkpoint("b.pt"), "b")
    await session.commit()
    assert (await registry.resolve_alias(session, None)).id == a.id
    assert (await registry.resolve_alias(session, "")).id == a.id
    assert (await registry.resolve_alias(session, "b")).id == b.id
    assert (await registry.resolve_alias(session, b.source_id)).id == b.id
    assert (await registry.resolve_alias(session, str(b.id))).id == b.id
    with pytest.raises(registry.ModelNotFound):
        await registry.resolve_alias(session, "nope")


async def test_no_default_is_a_clear_error(session):
    with pytest.raises(registry.ModelNotFound, match="no default model"):
        await registry.resolve_alias(session, None)


async def test_archive_blocks_new_work_keeps_data_and_protects_the_default(session, checkpoint):
    await registry.add_model(session, checkpoint("a.pt"), "a")
    b = await registry.add_model(session, checkpoint("b.pt"), "b")
    session.add(Generation(owner="alice", model_id=b.id, kind="text2music", status="succeeded"))
    await session.commit()
    with pytest.raises(
        registry.ModelConflict, match="is the default and cannot be archived: make another model the default first"
    ):
        await registry.archive(session, "a")
    archived = await registry.archive(session, "b")
    await session.commit()
    assert archived.status == "ARCHIVED"
    with pytest.raises(registry.ModelUnavailable, match="'b' is archived"):
        await registry.model_for_new_work(session, "b")
    with pytest.raises(registry.ModelUnavailable, match="archived"):
        await registry.set_default(session, "b")
    assert await session.scalar(select(func.count()).where(Generation.model_id == b.id)) == 1
    assert [m.alias for m in await registry.list_models(session, include_archived=False)] == ["a"]
    assert (await registry.unarchive(session, "b")).status == "READY"
    await session.commit()
    assert (await registry.model_for_new_work(session, "b")).id == b.id
    assert (await registry.model_for_new_work(session, None)).alias == "a"


async def test_delete_only_unused_non_default_models(session, checkpoint):
    await registry.add_model(session, checkpoint("a.pt"), "a")
    b = await registry.add_model(session, checkpoint("b.pt"), "b")
    c = await registry.add_model(session, checkpoint("c.pt"), "c")
    session.add(Generation(owner="alice", model_id=b.id, kind="text2music"))
    await session.commit()
    with pytest.raises(registry.ModelConflict, match="is the default and cannot be deleted"):
        await registry.delete(session, "a")
    with pytest.raises(registry.ModelConflict, match="produced 1 generations .* archive it instead"):
        await registry.delete(session, "b")
    await registry.delete(session, "c")
    await session.commit()
    assert await session.get(Model, c.id) is None


async def test_worker_status_transitions(session, checkpoint):
    m = await registry.add_model(session, checkpoint("a.pt"), "a")
    await session.commit()
    assert await registry.mark_loading(session, m.id) == "LOADING"
    assert await registry.mark_ready(session, m.id) == "READY"
    assert await registry.mark_running(session, m.id) == "RUNNING"
    assert await registry.mark_loading(session, m.id) == "RUNNING"  # another worker loading: still in use
    assert await registry.mark_ready(session, m.id) == "RUNNING"
    job = Generation(owner="alice", model_id=m.id, kind="text2music", status="running")
    session.add(job)
    await session.flush()
    assert await registry.mark_idle(session, m.id) == "RUNNING"  # a generation still runs with it
    job.status = "succeeded"
    await session.flush()
    assert await registry.mark_idle(session, m.id) == "READY"
    assert await registry.mark_failed(session, m.id, "load failed: boom") == "FAILED"
    await session.commit()
    await session.refresh(m)
    assert (m.status, m.status_reason) == ("FAILED", "load failed: boom")
    with pytest.raises(registry.ModelUnavailable, match="failed: load failed: boom"):
        await registry.model_for_new_work(session, "a")
    assert await registry.mark_loading(session, m.id) == "FAILED"  # a failed model is not loaded again


async def test_two_jobs_finishing_at_once_leave_the_model_ready(sessions, session, checkpoint):
    """Each job marks its rows finished and the model idle in one transaction: the second one's count waits for
    the first's commit, so neither leaves the model RUNNING because of the other's uncommitted rows."""
    m = await registry.add_model(session, checkpoint("a.pt"), "a")
    # two owners: one owner's status changes already queue behind each other (the events trigger's lock)
    jobs = [Generation(owner=owner, model_id=m.id, kind="text2music", status="running") for owner in ("al", "bo")]
    session.add_all(jobs)
    await session.flush()
    assert await registry.mark_running(session, m.id) == "RUNNING"
    model_id, job_ids = m.id, [job.id for job in jobs]
    await session.commit()

    async with sessions() as first, sessions() as second:
        for job_session, job_id in zip((first, second), job_ids, strict=True):
            await job_session.execute(
                Generation.__table__.update().where(Generation.id == job_id).values(status="succeeded")
            )
        assert await registry.mark_idle(first, model_id) == "RUNNING"  # the second job's rows are not committed yet
        later = asyncio.create_task(registry.mark_idle(second, model_id))
        await asyncio.sleep(0.3)
        assert not later.done()  # waits for the first job's transaction
        await first.commit()
        assert await later == "READY"
        await second.commit()
    assert await session.scalar(select(Model.status).where(Model.id == model_id)) == "READY"


async def test_transitions_refuse_archived_and_unknown_models(session, checkpoint):
    await registry.add_model(session, checkpoint("a.pt"), "a")
    b = await registry.add_model(session, checkpoint("b.pt"), "b")
    await registry.archive(session, "b")
    await session.commit()
    with pytest.raises(registry.ModelUnavailable, match="archived"):
        await registry.mark_loading(session, b.id)
    with pytest.raises(registry.ModelNotFound):
        await registry.mark_running(session, 999_999)


async def test_verify_marks_mismatches_failed_and_recovers(session, checkpoint):
    path = checkpoint("a.pt", b"original weights")
    a = await registry.add_model(session, path, "a")
    gone = await registry.add_model(session, checkpoint("gone.pt"), "gone")
    await session.commit()
    path.write_bytes(b"tampered weights")
    (path.parent / "gone.pt").unlink()
    results = {r.alias: r for r in await registry.verify(session)}
    await session.commit()
    assert results["a"].outcome == "failed" and "sha256 mismatch" in results["a"].detail
    assert results["gone"].outcome == "failed" and "checkpoint file not found" in results["gone"].detail
    await session.refresh(a)
    await session.refresh(gone)
    assert a.status == "FAILED" and "sha256 mismatch" in a.status_reason and gone.status == "FAILED"

    path.write_bytes(b"original weights")
    results = {r.alias: r for r in await registry.verify(session)}
    await session.commit()
    assert results["a"].outcome == "recovered"
    await session.refresh(a)
    assert (a.status, a.status_reason) == ("READY", None)


async def test_a_second_start_waits_for_the_first_registration(sessions, checkpoint, owner_conn):
    """Two processes starting together: the second waits for the first's transaction, then finds its row."""
    path = checkpoint("default.pt")

    async def second_start():
        async with sessions() as session:
            result = await registry.register_builtin(session, path)
            await session.commit()
            return result

    async with sessions() as first:
        created = await registry.register_builtin(first, path)  # not committed yet
        racer = asyncio.create_task(second_start())
        for _ in range(400):  # until the second registration is blocked inside the database
            await asyncio.sleep(0.025)
            if owner_conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                break
        else:
            pytest.fail("the second registration never waited for the first")
        await first.commit()
    second = await racer
    assert created.created and not second.created and second.model.id == created.model.id
    async with sessions() as session:
        assert len(await registry.list_models(session)) == 1
