"""A model never clustered: /v1/clusters and /v1/map answer 404 naming a command that really runs as written."""

from __future__ import annotations

import re

import pytest
from litestar.testing import AsyncTestClient

from indexing.cli import cluster_command
from indexing.demo import ensure_model
from service.app import create_app
from tests.integration.test_auth import bearer, issue

HINT = re.compile(r"`soundalike index cluster ([^`]*)`")


@pytest.fixture
async def client(settings, database, app_conn):
    ensure_model(app_conn, "fresh")
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        client.reader = bearer((await issue(client, settings, "zed", "reader")).key)
        yield client


@pytest.mark.parametrize("path", ["/v1/clusters", "/v1/map"])
async def test_the_hinted_command_parses(client, path):
    response = await client.get(path, params={"model": "fresh"}, headers=client.reader)
    assert response.status_code == 404, response.text
    hint = HINT.search(response.json()["detail"])
    assert hint, response.json()["detail"]
    args = hint.group(1).replace(" K", " 16").split()
    # click raises MissingParameter / BadParameter when an option the command requires is missing or malformed
    context = cluster_command.make_context("cluster", args)
    assert context.params["alias"] == "fresh" and context.params["k"] == 16
