"""``/v1/models`` for admins: every bad input answers a clear 4xx problem and changes nothing."""

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from service.app import create_app
from service.db.schema.models import Generation, Model
from service.domain.access import api_keys
from service.domain.models import registry


@pytest.fixture
async def client(settings, database, empty_tables):
    async with AsyncTestClient(create_app(database.app_url, settings)) as client:
        yield client


@pytest.fixture
async def keys(client, settings) -> dict[str, dict[str, str]]:
    headers = {}
    async with client.app.state.sessionmaker() as session:
        for role in ("reader", "creator", "admin"):
            issued = await api_keys.create_key(session, settings.auth.secret, f"{role}-owner", role)
            headers[role] = {"Authorization": f"Bearer {issued.key}"}
        await session.commit()
    return headers


@pytest.fixture
async def two_models(client, checkpoint) -> dict[str, int]:
    async with client.app.state.sessionmaker() as session:
        a = await registry.add_model(session, checkpoint("a.pt"), "a")
        b = await registry.add_model(session, checkpoint("b.pt"), "b")
        await session.commit()
        return {"a": a.id, "b": b.id}


def assert_problem(response, status: int, *fragments: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for fragment in fragments:
        assert fragment in body["detail"], body
    if field:  # named as the error's field, or (msgspec's missing/unknown field errors) in its message
        errors = body.get("errors", [])
        assert any(e["field"] == field or f"`{field}`" in (e["message"] or "") for e in errors), body
    return body


async def snapshot(client) -> list[tuple]:
    async with client.app.state.sessionmaker() as session:
        rows = await session.scalars(select(Model).order_by(Model.id))
        return [(m.id, m.alias, m.status, m.is_default, m.metadata_) for m in rows]


@pytest.mark.parametrize("role", ["reader", "creator"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/a"),
        ("POST", "/v1/models"),
        ("PATCH", "/v1/models/a"),
        ("DELETE", "/v1/models/a"),
    ],
)
async def test_only_admins_may_use_the_registry(client, keys, two_models, role, method, path):
    response = await client.request(method, path, headers=keys[role], json={"alias": "x"})
    assert_problem(response, 403, "needs the admin role")


async def test_no_key_is_401(client):
    assert_problem(await client.get("/v1/models"), 401, "missing API key")


async def test_list_and_show(client, keys, two_models):
    listed = (await client.get("/v1/models", headers=keys["admin"])).json()
    assert [(m["alias"], m["is_default"], m["status"]) for m in listed] == [("a", True, "READY"), ("b", False, "READY")]
    shown = await client.get(f"/v1/models/{two_models['b']}", headers=keys["admin"])
    assert shown.status_code == 200 and shown.json()["alias"] == "b" and len(shown.json()["checkpoint_sha256"]) == 64
    assert (await client.get("/v1/models/b", headers=keys["admin"])).json()["id"] == two_models["b"]
    assert_problem(await client.get("/v1/models/nope", headers=keys["admin"]), 404, "no model 'nope'")


async def test_aliases_with_slashes_are_addressable(client, keys, two_models):
    renamed = await client.patch("/v1/models/b", headers=keys["admin"], json={"alias": "local:piano/v2"})
    assert renamed.status_code == 200, renamed.text
    for path in ("/v1/models/local:piano/v2", "/v1/models/local%3Apiano%2Fv2"):
        shown = await client.get(path, headers=keys["admin"])
        assert shown.status_code == 200 and shown.json()["id"] == two_models["b"]


async def test_add_a_checkpoint(client, keys, real_checkpoint, tiny_pipeline):
    path = real_checkpoint("new.pt")
    body = {"checkpoint_path": str(path), "alias": "new", "version": "v3", "sample_rate": 16000}
    response = await client.post("/v1/models", headers=keys["admin"], json=body | {"metadata": {"note": "x"}})
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["alias"], created["version"], created["source_type"], created["is_default"]) == (
        "new",
        "v3",
        "local",
        True,
    )
    assert created["checkpoint_sha256"] == registry.sha256_file(path)
    # the checkpoint's calibrated in-domain threshold and sampling defaults are recorded next to the client's metadata
    config = tiny_pipeline.config
    defaults = {
        "steps": config.default_steps,
        "guidance_scale": config.default_guidance,
        "strength": config.default_strength,
    }
    assert created["metadata"] == {
        "note": "x",
        "in_domain_threshold": tiny_pipeline.in_domain_threshold,
        "defaults": defaults,
    }
    config = tiny_pipeline.config  # what the file says, not what a client claims
    assert (created["sample_rate"], created["clip_seconds"]) == (config.sample_rate, config.clip_seconds)


class NotAModel:
    """Pickled by reference: ``torch.load(weights_only=True)`` refuses to rebuild it."""


def unusable_checkpoints() -> dict[str, bytes]:
    import io
    import zipfile

    import torch

    def saved(payload) -> bytes:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("notes.txt", "a zip, but not torch's")
    return {
        "text": b"these are the weights, honest\n" * 40,
        "empty": b"",
        "other-zip": archive.getvalue(),
        "pickled-object": saved({"format": "soundalike-model/1", "model": NotAModel()}),
        "plain-tensors": saved({"weights": torch.zeros(3)}),
    }


@pytest.mark.parametrize("kind", ["text", "empty", "other-zip", "pickled-object", "plain-tensors"])
async def test_a_file_that_is_no_usable_model_is_refused(client, keys, two_models, checkpoint, kind):
    path = checkpoint(f"{kind}.pt", unusable_checkpoints()[kind])
    before = await snapshot(client)
    response = await client.post("/v1/models", headers=keys["admin"], json={"checkpoint_path": str(path), "alias": "x"})
    assert_problem(response, 400, f"{kind}.pt", field="checkpoint_path")
    assert "weights_only" not in response.text
    assert await snapshot(client) == before


async def test_declared_values_must_agree_with_the_checkpoint(client, keys, real_checkpoint):
    body = {"checkpoint_path": str(real_checkpoint("m.pt")), "alias": "m", "sample_rate": 32000}
    response = await client.post("/v1/models", headers=keys["admin"], json=body)
    assert_problem(response, 400, "32000 was given, but the checkpoint's sample_rate is 16000", field="sample_rate")
    assert await snapshot(client) == []


@pytest.mark.parametrize(
    ("body", "status", "fragment", "field"),
    [
        ({"checkpoint_path": "/nowhere/x.pt", "alias": "x"}, 400, "no file at /nowhere/x.pt", "checkpoint_path"),
        ({"checkpoint_path": "{ckpt}", "alias": "a"}, 409, "'a' is already the alias of model", None),
        ({"checkpoint_path": "{ckpt}", "alias": "bad alias"}, 400, "must start with a letter", "alias"),
        ({"checkpoint_path": "{ckpt}", "alias": "123"}, 400, "must not be all digits", "alias"),
        ({"checkpoint_path": "{ckpt}", "alias": ""}, 400, "Validation failed", "alias"),
        ({"checkpoint_path": "{ckpt}"}, 400, "Validation failed", "alias"),
        ({"checkpoint_path": "{ckpt}", "alias": "x", "latent_dim": 0}, 400, "Validation failed", "latent_dim"),
        ({"checkpoint_path": "{ckpt}", "alias": "x", "colour": "red"}, 400, "Validation failed", "colour"),
        ({"checkpoint_path": "{same}", "alias": "x"}, 409, "is already registered as 'a'", None),
        (
            {"checkpoint_path": "{ckpt}", "alias": "x", "metadata": {"in_domain_threshold": 2}},
            400,
            "in_domain_threshold must be a number in [0, 1]; got 2",
            "metadata.in_domain_threshold",
        ),
    ],
)
async def test_add_refuses_bad_input(client, keys, two_models, checkpoint, body, status, fragment, field):
    paths = {"{ckpt}": str(checkpoint("fresh.pt")), "{same}": str(checkpoint("a.pt"))}
    body = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    before = await snapshot(client)
    assert_problem(await client.post("/v1/models", headers=keys["admin"], json=body), status, fragment, field=field)
    assert await snapshot(client) == before


async def test_patch_records_a_valid_in_domain_threshold_only(client, keys, two_models):
    admin = keys["admin"]
    for bad in ("high", -0.1, True):
        response = await client.patch("/v1/models/b", headers=admin, json={"metadata": {"in_domain_threshold": bad}})
        assert_problem(
            response, 400, "in_domain_threshold must be a number in [0, 1]", field="metadata.in_domain_threshold"
        )
    response = await client.patch("/v1/models/b", headers=admin, json={"metadata": {"in_domain_threshold": 0.25}})
    assert response.status_code == 200 and response.json()["metadata"] == {"in_domain_threshold": 0.25}


async def test_patch_checks_sampling_defaults_and_merges_them_key_by_key(client, keys, two_models):
    admin = keys["admin"]
    for bad, message in (
        ({"steps": 0}, "defaults.steps must be an integer in [1, 200]"),
        ({"guidance_scale": 21}, "defaults.guidance_scale must be a number in [0.0, 20.0]"),
        ({"strength": "x"}, "defaults.strength must be a number in [0.0, 1.0]"),
        ({"temperature": 1}, "defaults has unknown keys ['temperature']"),
        ([25], "defaults must be an object"),
    ):
        response = await client.patch("/v1/models/b", headers=admin, json={"metadata": {"defaults": bad}})
        assert_problem(response, 400, message, field="metadata.defaults")
    set_both = {"metadata": {"defaults": {"steps": 12, "strength": 0.5}}}
    assert (await client.patch("/v1/models/b", headers=admin, json=set_both)).status_code == 200
    response = await client.patch("/v1/models/b", headers=admin, json={"metadata": {"defaults": {"steps": 30}}})
    assert response.status_code == 200 and response.json()["metadata"]["defaults"] == {"steps": 30, "strength": 0.5}


async def test_patch_renames_sets_default_archives_and_merges_metadata(client, keys, two_models):
    admin = keys["admin"]
    renamed = await client.patch("/v1/models/b", headers=admin, json={"alias": "bee", "metadata": {"k": 1}})
    assert renamed.status_code == 200 and renamed.json()["alias"] == "bee" and renamed.json()["metadata"] == {"k": 1}
    made_default = await client.patch("/v1/models/bee", headers=admin, json={"is_default": True})
    assert made_default.json()["is_default"] is True
    archived = await client.patch("/v1/models/a", headers=admin, json={"status": "ARCHIVED"})
    assert archived.status_code == 200 and archived.json()["status"] == "ARCHIVED"
    active = (await client.get("/v1/models?include_archived=false", headers=admin)).json()
    assert [m["alias"] for m in active] == ["bee"]
    back = await client.patch("/v1/models/a", headers=admin, json={"status": "READY"})
    assert back.json()["status"] == "READY"
    assert [s[3] for s in await snapshot(client)] == [False, True]


@pytest.mark.parametrize(
    ("ref", "body", "status", "fragment", "field"),
    [
        ("nope", {"alias": "x"}, 404, "no model 'nope'", None),
        ("b", {"alias": "a"}, 409, "'a' is already the alias", None),
        ("b", {"alias": "has space"}, 400, "must start with a letter", "alias"),
        (
            "a",
            {"status": "ARCHIVED"},
            409,
            "is the default and cannot be archived: make another model the default first",
            None,
        ),
        ("archived", {"is_default": True}, 409, "is archived", None),
        ("b", {"is_default": True, "status": "ARCHIVED"}, 409, "archived and made the default at once", None),
        ("a", {"is_default": False}, 400, "there is always one default", "is_default"),
        ("b", {"status": "READY"}, 400, "only an archived model", "status"),
        ("b", {"status": "RUNNING"}, 400, "Validation failed", "status"),
        ("b", {"alias": "z", "owner": "me"}, 400, "Validation failed", "owner"),
    ],
)
async def test_patch_refuses_bad_input_and_writes_nothing(
    client, keys, two_models, checkpoint, ref, body, status, fragment, field
):
    async with client.app.state.sessionmaker() as session:
        await registry.add_model(session, checkpoint("old.pt"), "archived")
        await registry.archive(session, "archived")
        await session.commit()
    before = await snapshot(client)
    response = await client.patch(f"/v1/models/{ref}", headers=keys["admin"], json=body)
    assert_problem(response, status, fragment, field=field)
    assert await snapshot(client) == before


async def test_rename_then_failing_step_is_rolled_back(client, keys, two_models, checkpoint):
    async with client.app.state.sessionmaker() as session:
        await registry.add_model(session, checkpoint("old.pt"), "archived")
        await registry.archive(session, "archived")
        await session.commit()
    before = await snapshot(client)
    response = await client.patch("/v1/models/archived", headers=keys["admin"], json={"alias": "x", "is_default": True})
    assert_problem(response, 409, "is archived")
    assert await snapshot(client) == before  # the rename that ran first was not kept


async def test_delete(client, keys, two_models, checkpoint):
    admin = keys["admin"]
    async with client.app.state.sessionmaker() as session:
        session.add(Generation(owner="alice", model_id=two_models["b"], kind="text2music"))
        await session.commit()
    assert_problem(await client.delete("/v1/models/a", headers=admin), 409, "is the default and cannot be deleted")
    assert_problem(await client.delete("/v1/models/b", headers=admin), 409, "archive it instead")
    assert_problem(await client.delete("/v1/models/zzz", headers=admin), 404, "no model 'zzz'")
    async with client.app.state.sessionmaker() as session:
        await registry.add_model(session, checkpoint("spare.pt"), "spare")
        await session.commit()
    assert (await client.delete("/v1/models/spare", headers=admin)).status_code == 204
    assert [s[1] for s in await snapshot(client)] == ["a", "b"]
