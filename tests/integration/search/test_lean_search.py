"""The lean search path: the default model cached per process and dropped when the registry changes (at once in
this process, by NOTIFY in others), the search statement kept prepared on its pooled connection, and a search
inside a session's transaction leaving that transaction to its owner."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest
from sqlalchemy import select

from service.db.engine import create_engine, session_factory
from service.db.schema.models import ApiKey, Model
from service.db.server import urls
from service.domain.access import api_keys
from service.domain.access.api_keys import Caller
from service.domain.discovery import search
from service.domain.models import registry
from service.domain.models.default_cache import MODELS_CHANNEL, DefaultModelCache
from service.settings import DatabaseSettings
from tests.integration.api_helpers import api_client, api_settings, bearer_for
from tests.integration.search.conftest import exact_ids, visible_to

ADMIN = Caller("root", "admin", 0)


@pytest.fixture
async def client(database, catalogue, tmp_path):
    async with api_client(database, api_settings(database, tmp_path), worker=False) as client:
        client.admin = await bearer_for(client, "root", "admin")
        client.catalogue = catalogue
        client.app.state.default_model.ttl = 300  # long: only a notification can make a change seen
        yield client


async def searched_model(client, query: np.ndarray) -> tuple[str, list[str]]:
    response = await client.post("/v1/search", json={"vector": query.tolist(), "limit": 5}, headers=client.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model"], [item["id"] for item in body["items"]]


async def test_a_new_default_made_through_the_api_is_searched_at_once(client):
    cat = client.catalogue
    query = cat.items[0].vector
    model, _ = await searched_model(client, query)
    assert model == "tiny"
    changed = await client.patch("/v1/models/other", headers=client.admin, json={"is_default": True})
    assert changed.status_code == 200, changed.text
    model, found = await searched_model(client, query)
    assert model == "other" and found == [str(i) for i in exact_ids(cat.twins, query, 5)]


async def test_a_change_made_elsewhere_arrives_by_notify(client, owner_conn):
    query = client.catalogue.items[0].vector
    assert (await searched_model(client, query))[0] == "tiny"
    owner_conn.execute("UPDATE models SET is_default = (alias = 'other')")  # plain SQL: nothing is notified
    assert (await searched_model(client, query))[0] == "tiny"  # the cached default, for up to 300 s
    owner_conn.execute(f"NOTIFY {MODELS_CHANNEL}")  # as a registry change made by another process sends it
    seen = []
    for _ in range(600):  # the notification arrives asynchronously: poll (at most 30 s)
        seen.append((await searched_model(client, query))[0])
        if seen[-1] == "other":
            break
        await asyncio.sleep(0.05)
    assert seen[-1] == "other", seen


@pytest.fixture
async def registry_listener(database, catalogue):
    """A session factory of the application and a plain connection LISTENing on the registry's channel."""
    engine = create_engine(database.app_url, DatabaseSettings())
    try:
        with psycopg.connect(urls.libpq_url(database.app_url), autocommit=True) as listener:
            listener.execute(f"LISTEN {MODELS_CHANNEL}")
            yield session_factory(engine), listener
    finally:
        await engine.dispose()


async def test_registry_changes_through_the_orm_notify_at_commit(registry_listener):
    sessions, listener = registry_listener
    async with sessions() as session:
        await registry.rename(session, "other", "renamed")
        await session.rollback()  # a change that never commits says nothing
        await registry.set_default(session, "other")  # the rename was rolled back
        await session.commit()
    heard = [n.channel for n in listener.notifies(timeout=30, stop_after=1)]
    assert heard == [MODELS_CHANNEL]
    assert not list(listener.notifies(timeout=0.5, stop_after=1))  # the rolled back rename sent nothing


async def test_a_job_using_a_model_notifies_nothing_but_a_failed_model_does(registry_listener):
    sessions, listener = registry_listener
    async with sessions() as session:
        model_id = (await registry.resolve_alias(session, "other")).id
        for move in (registry.mark_loading, registry.mark_ready, registry.mark_running, registry.mark_idle):
            await move(session, model_id)
            await session.commit()
        assert (await registry.resolve_alias(session, "other")).status == registry.READY
        assert not list(listener.notifies(timeout=0.5, stop_after=1))  # searches keep their cached default
        await registry.mark_failed(session, model_id, "checksum mismatch")
        await session.commit()
    assert [n.channel for n in listener.notifies(timeout=30, stop_after=1)] == [MODELS_CHANNEL]


async def test_the_search_statement_stays_prepared_on_its_connection(database, catalogue):
    engine = create_engine(database.app_url, DatabaseSettings(pool_size=1, max_overflow=0))
    defaults = DefaultModelCache(ttl=300)
    items, query = catalogue.items, catalogue.items[5].vector
    try:
        for _ in range(3):  # the first fills the cache (its session reads the model), the others take the lean path
            async with session_factory(engine)() as session:
                result = await search.search(
                    session, ADMIN, search.SearchQuery(vector=query.tolist(), limit=7), None, defaults
                )
            assert [hit.generation_id for hit in result.hits] == exact_ids(visible_to(items, "root", True), query, 7)
        async with engine.connect() as connection:  # the pool's only connection
            prepared = (await connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements")).scalars()
            assert any("latent_embeddings.embedding <=>" in statement for statement in prepared)
    finally:
        await engine.dispose()


async def test_a_search_inside_a_transaction_leaves_its_work_uncommitted(database, catalogue):
    engine = create_engine(database.app_url, DatabaseSettings())
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            model = await session.scalar(select(Model).where(Model.alias == "tiny"))
            issued = await api_keys.create_key(session, "secret", "zed", "reader")  # flushed, not committed
            target = search.Target(model, catalogue.items[1].vector)
            hits = await search.nearest(session, ADMIN, target, search.SearchFilter(), 3)
            assert len(hits) == 3
            await session.rollback()
        async with sessions() as session:
            assert await session.get(ApiKey, issued.id) is None
    finally:
        await engine.dispose()
