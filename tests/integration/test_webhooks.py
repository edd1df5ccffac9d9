"""Webhooks against the real app, its in-process worker and receivers on 127.0.0.1: signed deliveries of the
owner's events, retries after a failing receiver, the delivery log, test-fire, and nothing sent elsewhere."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from service.app import create_app
from service.domain.notify import webhooks
from service.domain.notify.webhooks import SIGNATURE_HEADER, verify_signature
from service.settings import JobsSettings
from tests.integration.api_helpers import api_client, api_settings, bearer_for
from tests.integration.live_server import insert_key, live_server


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers with the next of ``statuses``."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.requests = list(statuses), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    server = Receiver(list(statuses) or [200])
    try:
        yield server
    finally:
        server.server.shutdown()


@pytest.fixture
def app_url(database, tmp_path, model_id):
    jobs = JobsSettings(
        heartbeat_seconds=1,
        webhook_attempts=3,
        webhook_backoff_seconds=1,
        webhook_timeout_seconds=5,
        webhook_allow_private_hosts=True,  # the receivers listen on 127.0.0.1
    )
    settings = api_settings(database, tmp_path).model_copy(update={"jobs": jobs})
    with live_server(create_app(database.app_url, settings, run_worker_in_process=True)) as url:
        yield url


@pytest.fixture
def clients(app_url, owner_conn) -> Iterator[dict[str, httpx.Client]]:
    made = {
        owner: httpx.Client(
            base_url=app_url, timeout=30, headers={"Authorization": f"Bearer {insert_key(owner_conn, owner, role)}"}
        )
        for owner, role in (("alice", "creator"), ("bob", "creator"), ("carol", "reader"))
    }
    yield made
    for client in made.values():
        client.close()


def register(client: httpx.Client, url: str, **fields) -> dict:
    response = client.post("/v1/webhooks", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def new_generation(conn, model_id: int, owner: str) -> str:
    row = conn.execute(
        "INSERT INTO generations (owner, model_id, kind) VALUES (%s, %s, 'text2music') RETURNING id", (owner, model_id)
    ).fetchone()
    return str(row[0])


def settled(client: httpx.Client, webhook_id: str, count: int, deadline_seconds: float = 60) -> list[dict]:
    """The newest ``count`` deliveries once none of them is pending; fails instead of waiting forever."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        items = client.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
        if len(items) >= count and all(item["status"] != "pending" for item in items[:count]):
            return items[:count]
        time.sleep(0.2)
    raise AssertionError(f"deliveries of {webhook_id} still pending: {items}")


def test_events_are_delivered_signed_and_logged(clients, owner_conn, model_id):
    alice = clients["alice"]
    with receiver(200) as hook:
        webhook = register(alice, hook.url, events=["generation"])
        assert (
            webhook["secret"].startswith("whsec_") and "secret" not in alice.get(f"/v1/webhooks/{webhook['id']}").json()
        )
        generation_id = new_generation(owner_conn, model_id, "alice")
        [delivery] = settled(alice, webhook["id"], 1)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("succeeded", 1, 200)
    [(headers, body)] = hook.requests
    document = json.loads(body)
    assert document["type"] == "generation" and document["delivery_id"] == delivery["id"]
    assert (document["data"]["id"], document["data"]["status"]) == (generation_id, "pending")
    assert document["event_id"] == document["data"]["event_id"] == delivery["event_id"]
    signature = headers[SIGNATURE_HEADER]
    assert verify_signature(webhook["secret"], signature, body)
    assert not verify_signature(webhook["secret"], signature, body.replace(b"pending", b"running"))
    assert not verify_signature("whsec_another", signature, body)
    assert not verify_signature(webhook["secret"], signature, body, now=time.time() + 3600)  # a replay, later


def test_a_failing_receiver_gets_the_same_delivery_again(clients, owner_conn, model_id):
    alice = clients["alice"]
    with receiver(500, 502, 200) as hook:
        webhook = register(alice, hook.url)
        new_generation(owner_conn, model_id, "alice")
        [delivery] = settled(alice, webhook["id"], 1)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("succeeded", 3, 200)
    assert len(hook.requests) == 3 and len({body for _, body in hook.requests}) == 1


def test_a_receiver_that_keeps_failing_is_given_up_on(clients, owner_conn, model_id):
    alice = clients["alice"]
    with receiver(503) as hook:
        webhook = register(alice, hook.url)
        new_generation(owner_conn, model_id, "alice")
        [delivery] = settled(alice, webhook["id"], 1)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert delivery["last_error"].startswith("HTTP 503") and len(hook.requests) == 3


def test_nothing_goes_where_the_owner_did_not_register(clients, owner_conn, model_id):
    alice, bob = clients["alice"], clients["bob"]
    with receiver(200) as alices, receiver(200) as bobs:
        mine = register(alice, alices.url)
        register(bob, bobs.url, events=["batch"])
        bobs_generation = new_generation(owner_conn, model_id, "bob")  # bob's: not alice's; not a batch: not bob's
        alices_generation = new_generation(owner_conn, model_id, "alice")
        settled(alice, mine["id"], 1)
        assert [b["data"]["id"] for b in alices.bodies()] == [alices_generation]
        assert bobs.requests == [] and bobs_generation not in json.dumps(alices.bodies())

        assert alice.delete(f"/v1/webhooks/{mine['id']}").status_code == 204
        new_generation(owner_conn, model_id, "alice")
        assert owner_conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0] == 1
        assert alice.post(f"/v1/webhooks/{mine['id']}/test").status_code == 404
        assert bob.get(f"/v1/webhooks/{mine['id']}/deliveries").status_code == 404


def test_test_fire_sends_a_signed_ping(clients):
    alice = clients["alice"]
    with receiver(200) as hook:
        webhook = register(alice, hook.url)
        queued = alice.post(f"/v1/webhooks/{webhook['id']}/test")
        assert queued.status_code == 202 and queued.json()["status"] == "pending"
        [delivery] = settled(alice, webhook["id"], 1)
    assert delivery["type"] == "ping" and delivery["status"] == "succeeded"
    [(headers, body)] = hook.requests
    assert headers["Soundalike-Event"] == "ping" and verify_signature(
        webhook["secret"], headers[SIGNATURE_HEADER], body
    )


def test_bad_registrations_name_the_field(clients):
    alice = clients["alice"]
    for url, needle in (
        ("ftp://127.0.0.1/x", "http:// or https://"),
        ("http://u:p@127.0.0.1/x", "user name"),
        ("/relative", "absolute"),
    ):
        response = alice.post("/v1/webhooks", json={"url": url})
        assert response.status_code == 422, url
        [error] = response.json()["errors"]
        assert error["field"] == "url" and needle in error["message"]
    wrong_event = alice.post("/v1/webhooks", json={"url": "http://127.0.0.1/x", "events": ["everything"]})
    assert wrong_event.status_code == 400 and wrong_event.json()["errors"][0]["field"] == "events[0]"
    assert clients["carol"].post("/v1/webhooks", json={"url": "http://127.0.0.1/x"}).status_code == 403
    assert alice.get("/v1/webhooks").json() == []


def test_the_secret_rotates_and_the_replaced_one_signs_through_its_grace_window(clients):
    alice = clients["alice"]
    with receiver(200) as hook:
        webhook = register(alice, hook.url)
        first = webhook["secret"]
        rotated = alice.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", json={"grace_seconds": 3600})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["secret"]
        assert second.startswith("whsec_") and second != first and rotated.json()["previous_secret_expires_at"]
        alice.post(f"/v1/webhooks/{webhook['id']}/test")
        settled(alice, webhook["id"], 1)
        # no grace: the replaced secret stops at once (and the one before it, still in its window, too)
        third = alice.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", json={"grace_seconds": 0}).json()
        assert third["previous_secret_expires_at"] is None
        alice.post(f"/v1/webhooks/{webhook['id']}/test")
        settled(alice, webhook["id"], 2)
    [(during, body_during), (after, body_after)] = [(h[SIGNATURE_HEADER], b) for h, b in hook.requests]
    assert verify_signature(second, during, body_during) and verify_signature(first, during, body_during)
    assert verify_signature(third["secret"], after, body_after)
    assert not verify_signature(second, after, body_after) and not verify_signature(first, after, body_after)
    assert "secret" not in alice.get(f"/v1/webhooks/{webhook['id']}").json()

    default = alice.post(f"/v1/webhooks/{webhook['id']}/rotate-secret")  # no body: the default grace (24 h)
    assert default.status_code == 200 and default.json()["previous_secret_expires_at"]
    too_long = alice.post(f"/v1/webhooks/{webhook['id']}/rotate-secret", json={"grace_seconds": 10**7})
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["field"] == "grace_seconds"
    assert clients["bob"].post(f"/v1/webhooks/{webhook['id']}/rotate-secret").status_code == 404
    assert clients["carol"].post(f"/v1/webhooks/{webhook['id']}/rotate-secret").status_code == 403


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "not a public address"),
    ],
)
async def test_hosts_that_are_not_public_are_refused_by_default(database, tmp_path, model_id, url, reason):
    settings = api_settings(database, tmp_path, webhook_allow_private_hosts=False)
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        response = await client.post("/v1/webhooks", json={"url": url}, headers=alice)
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["field"] == "url" and reason in error["message"]
        assert "SOUNDALIKE_JOBS_WEBHOOK_ALLOW_PRIVATE_HOSTS" in error["message"]
        assert (await client.get("/v1/webhooks", headers=alice)).json() == []


async def test_a_public_address_is_taken_and_schemes_stay_refused(database, tmp_path, model_id):
    settings = api_settings(database, tmp_path, webhook_allow_private_hosts=False)
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        public = await client.post("/v1/webhooks", json={"url": "https://93.184.216.34/hook"}, headers=alice)
        assert public.status_code == 201, public.text
        for url in ("ftp://93.184.216.34/hook", "file:///etc/passwd", "gopher://93.184.216.34/"):
            refused = await client.post("/v1/webhooks", json={"url": url}, headers=alice)
            assert refused.status_code == 422 and "http:// or https://" in refused.json()["errors"][0]["message"]


async def test_each_delivery_checks_the_address_again(database, tmp_path, model_id):
    """A webhook whose host resolves to a loopback address by the time of delivery (registered while allowed,
    or a name whose answer changed) gets nothing: the delivery fails at once, without a retry."""
    settings = api_settings(database, tmp_path)  # allowed when registered...
    async with api_client(database, settings, worker=False) as client:
        alice = await bearer_for(client, "alice", "creator")
        with receiver(200) as hook:
            webhook = (await client.post("/v1/webhooks", json={"url": hook.url}, headers=alice)).json()
            first = (await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=alice)).json()
            refusing = webhooks.DeliverySettings(max_attempts=6, timeout_seconds=5, allow_private_hosts=False)
            sessions = client.app.state.sessionmaker
            attempt = await webhooks.deliver(sessions, first["id"], 1, refusing)  # ...not when delivered
            assert (attempt.status, attempt.retry, attempt.refused) == ("failed", False, True)
            assert hook.requests == []
            [logged] = (await client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=alice)).json()["items"]
            assert (
                logged["status"] == "failed"
                and "refused" in logged["last_error"]
                and "loopback" in logged["last_error"]
            )

            second = (await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=alice)).json()
            allowing = webhooks.DeliverySettings(max_attempts=6, timeout_seconds=5, allow_private_hosts=True)
            assert (await webhooks.deliver(sessions, second["id"], 1, allowing)).status == "succeeded"
            assert len(hook.requests) == 1
