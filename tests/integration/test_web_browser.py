"""The explorer in a real browser: Debian's headless chromium driven by Playwright, against the real app (with
its worker and the project's tiny model) on 127.0.0.1. Screenshots go to $SOUNDALIKE_SCREENSHOTS when it is set
(``docs/img`` refreshes the README's), else to a temporary directory."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.integration.live_server import app_with_tiny_model

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FAST = {"steps": 4}  # 4 sampling steps: quick; these tests check the explorer, not the music


@pytest.fixture(scope="module")
def site(database, tmp_path_factory, tiny_pipeline, tiny_checkpoint):
    """The app with an in-process worker, the project's tiny model as the default model and a creator key."""
    with app_with_tiny_model(database, tmp_path_factory.mktemp("web"), tiny_pipeline, tiny_checkpoint) as site:
        yield site


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make install` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(base_url=site["url"], viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, site["key"])
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return Path(os.environ.get("SOUNDALIKE_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))


def sign_in(page, key: str) -> None:
    page.goto("/")
    assert page.url.endswith("/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/generate")


def api(site) -> httpx.Client:
    return httpx.Client(base_url=site["url"], headers={"Authorization": f"Bearer {site['key']}"}, timeout=120)


def generate(site, prompt: str, n: int) -> list[dict]:
    with api(site) as client:
        response = client.post("/v1/generations?wait=60", json={"prompt": prompt, "batch_size": n, **FAST})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def audio_duration(page, selector: str) -> float:
    audio = page.locator(selector).first
    audio.wait_for()
    handle = page.wait_for_function("a => a.readyState >= 1 && a.duration", arg=audio.element_handle())
    return handle.json_value()


def test_sign_in_generate_and_hear_it(page, shots):
    page.get_by_label("Prompt").fill("piano, minor, 90 bpm")
    page.get_by_label("Steps").fill("4")
    page.get_by_label("Clips", exact=True).fill("2")
    page.get_by_role("button", name="Generate", exact=True).click()
    done = page.locator("#results .card[data-status='succeeded']")
    done.nth(1).wait_for()
    assert done.count() == 2
    assert audio_duration(page, "#results .card audio") == pytest.approx(4.0, abs=0.01)
    assert "piano, minor, 90 bpm" in done.first.inner_text()
    page.screenshot(path=shots / "explorer-generate.png", full_page=True)


def test_a_bad_prompt_shows_the_problem(page):
    page.get_by_label("Prompt").fill("kazoo solo")
    page.get_by_role("button", name="Generate", exact=True).click()
    status = page.locator("#status.error")
    status.wait_for()
    assert "prompt" in status.inner_text()


def test_library_lists_filters_changes_visibility_and_deletes(page, site, shots):
    generate(site, "guitar, major, 100 bpm", 2)
    page.goto("/library")
    cards = page.locator("#library .card")
    cards.first.wait_for()
    before = cards.count()
    page.get_by_label("Tags").fill("guitar")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#library .card-tags')].every(t => t.textContent.includes('guitar'))"
    )
    page.screenshot(path=shots / "explorer-library.png", full_page=True)
    first = page.locator("#library .card").first
    first.get_by_label("Visibility").select_option("public")
    page.wait_for_function("() => document.querySelector('#library .card').dataset.visibility === 'public'")
    with api(site) as client:
        assert client.get(f"/v1/generations/{first.get_attribute('data-id')}").json()["visibility"] == "public"
    page.once("dialog", lambda dialog: dialog.accept())
    guitar = page.locator("#library .card").count()
    page.locator("#library .card").first.get_by_role("button", name="Delete").click()
    page.wait_for_function(f"() => document.querySelectorAll('#library .card').length === {guitar - 1}")
    assert before >= guitar


def test_sounds_like_restyle_and_variants(page, site, shots):
    source, *_ = generate(site, "strings, minor, slow", 3) + generate(site, "brass, major, fast", 2)
    page.goto(f"/like/{source['id']}")
    neighbours = page.locator("#neighbours .card")
    neighbours.nth(2).wait_for()
    assert "similarity" in neighbours.first.inner_text()

    page.locator("#strength").fill("0.8")
    neighbours.first.get_by_role("button", name="Restyle after this").click()
    restyled = page.locator("#restyled .card[data-status='succeeded']")
    restyled.wait_for()
    assert audio_duration(page, "#restyled .card audio") == pytest.approx(4.0, abs=0.01)
    page.locator("#lineage").get_by_text("style transfer").wait_for()

    page.locator("#source .card").get_by_label("Select").check()
    neighbours.first.get_by_label("Select").check()
    page.get_by_label("Variants per source").fill("2")
    page.get_by_role("button", name="Make variants").click()
    page.wait_for_function(
        "() => { const p = document.querySelector('#batch-progress');"
        " return p.dataset.status === 'succeeded' && p.value === p.max && p.max === 4; }"
    )
    page.locator("#variants .card[data-status='succeeded']").nth(3).wait_for()
    assert "succeeded: 4 of 4 done" in page.locator("#batch-text").inner_text()
    page.screenshot(path=shots / "explorer-sounds-like.png", full_page=True)


def test_sounds_like_an_uploaded_file(page, site, tmp_path):
    source, *_ = generate(site, "mallet, major, 120 bpm", 2)
    with api(site) as client:
        clip = tmp_path / "my clip.wav"
        clip.write_bytes(client.get(f"/v1/generations/{source['id']}/audio").content)
    page.get_by_role("link", name="Sounds like a file").click()
    page.wait_for_url("**/like")
    page.get_by_label("Audio file").set_input_files(clip)
    page.get_by_label("How many").fill("3")
    page.get_by_role("button", name="Find what sounds like it").click()
    neighbours = page.locator("#neighbours .card")
    neighbours.first.wait_for()
    assert neighbours.count() == 3
    assert all("similarity" in text for text in neighbours.all_inner_texts())
    verdict = page.locator("#verdict")
    assert verdict.is_visible() and "in-domain" in verdict.inner_text()
    assert audio_duration(page, "#neighbours .card audio") == pytest.approx(4.0, abs=0.01)


def test_sounds_like_my_likes(page, site, shots):
    liked_a, liked_b, disliked, *_ = (item["id"] for item in generate(site, "organ, minor, 100 bpm", 6))
    examples = {liked_a, liked_b, disliked}
    with api(site) as client:  # the API leaves the examples themselves out of the hits
        body = {"positive": [liked_a, liked_b], "negative": [disliked], "limit": 100}
        response = client.post("/v1/search", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["items"] and not {hit["id"] for hit in response.json()["items"]} & examples

    page.goto("/library")
    tray = page.get_by_role("complementary", name="Liked and disliked clips")
    page.locator(f"#library .card[data-id='{disliked}']").wait_for()
    assert tray.is_hidden()
    for id_ in (liked_a, liked_b):
        page.locator(f"#library .card[data-id='{id_}']").get_by_role("button", name=re.compile("^Like:")).click()
    dislike = page.locator(f"#library .card[data-id='{disliked}']").get_by_role("button", name=re.compile("^Dislike:"))
    dislike.focus()
    page.keyboard.press("Enter")  # the buttons work from the keyboard
    assert dislike.get_attribute("aria-pressed") == "true"
    assert "2 liked · 1 disliked" in tray.inner_text()

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    tray.get_by_role("link", name="Sounds like my likes").click()
    page.wait_for_url("**/likes")
    assert page.locator("#liked li").count() == 2 and page.locator("#disliked li").count() == 1
    hits = page.locator("#neighbours .card")
    for strategy, closeness in (("average_vector", "similarity"), ("best_score", "score")):
        page.get_by_label("How to combine").select_option(strategy)
        page.evaluate("() => document.querySelector('#neighbours').replaceChildren()")
        page.get_by_role("button", name="Find what sounds like my likes").click()
        hits.first.wait_for()
        # best_score ranks by its own score (the API gives no similarity for it); the card shows that instead
        assert all(re.search(rf"\b{closeness} -?\d", text) for text in hits.all_inner_texts())
        assert not set(hits.evaluate_all("cards => cards.map(c => c.dataset.id)")) & examples
    assert audio_duration(page, "#neighbours .card audio") == pytest.approx(4.0, abs=0.01)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=shots / "explorer-likes-phone.png", full_page=True)

    tray.get_by_role("button", name="Clear likes").click()
    assert tray.is_hidden()
    assert page.locator("#liked").inner_text() == "none yet"


@pytest.fixture(scope="module")
def clustered(site) -> None:
    """The site's clips (and six more) clustered, so the map has points."""
    from indexing.clustering import cluster_model
    from indexing.source import resolve_model
    from indexing.sync import connect

    generate(site, "organ, major, 110 bpm", 3)
    generate(site, "flute, minor, 80 bpm", 3)
    url = site["database"].app_url
    with connect(url) as conn:
        model = resolve_model(conn, "default")
    cluster_model(url, site["tmp"] / "index", model, k=2)


def test_map_renders_points_and_a_click_plays_one(page, site, shots, clustered):
    page.goto("/map")
    page.get_by_text("clips of model default").wait_for()
    x, y = page.evaluate(FIRST_PAINTED_POINT)
    page.mouse.move(x, y)
    tip = page.locator("#map-tip")
    tip.wait_for()
    assert "cluster" in tip.inner_text()
    page.screenshot(path=shots / "explorer-map.png")
    page.mouse.click(x, y)
    page.wait_for_function(
        "() => { const a = document.querySelector('#map-audio');"
        " return a.src.includes('/audio') && a.readyState >= 1 && Math.abs(a.duration - 4) < 0.01 && !a.paused; }"
    )
    assert page.locator("#now-playing").inner_text().startswith("Playing:")


def test_a_lasso_selects_points_and_makes_variants_of_them(page, site, clustered):
    page.goto("/map")
    info = page.get_by_text("clips of model default")
    info.wait_for()
    points = int(info.inner_text().split()[0])
    page.get_by_role("button", name="Lasso").click()
    assert page.get_by_role("button", name="Lasso").get_attribute("aria-pressed") == "true"
    page.evaluate("() => document.querySelector('#map').scrollIntoView({block: 'center'})")  # all of it in view
    box = page.locator("#map").bounding_box()
    left, top, right, bottom = box["x"] + 2, box["y"] + 2, box["x"] + box["width"] - 2, box["y"] + box["height"] - 2
    page.mouse.move(left, top)
    page.mouse.down()  # on the map; the lasso runs around it, outside (a browser may skip a move's last point)
    for x, y in ((left - 30, top - 30), (right + 30, top - 30), (right + 30, bottom + 30), (left - 30, bottom + 30)):
        page.mouse.move(x, y, steps=8)
    page.mouse.move(left - 30, top - 30, steps=8)
    page.mouse.up()
    assert page.locator("#lasso-count").inner_text() == str(points)  # around the whole map: every point
    assert not page.evaluate("() => document.querySelector('#map-audio').src")  # a lasso plays nothing

    page.get_by_label("Variants per clip").fill("1")
    page.get_by_role("button", name="Make variants of the selection").click()
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('#batch-progress');"
        f" return p.dataset.status === 'succeeded' && p.value === p.max && p.max === {points}; }}"
    )
    assert f"succeeded: {points} of {points} done" in page.locator("#batch-text").inner_text()


# The page coordinates of the centre of the first coloured disc on the map canvas.
FIRST_PAINTED_POINT = """() => {
  const canvas = document.querySelector('#map');
  const { width, height } = canvas;
  const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  for (let i = 3; i < pixels.length; i += 4) {
    if (pixels[i] > 200) {
      const px = (i >> 2) % width, py = Math.floor((i >> 2) / width);
      const rect = canvas.getBoundingClientRect();
      return [rect.left + (px + 0.5) * rect.width / width, rect.top + (py + 3) * rect.height / height];
    }
  }
  throw new Error('nothing painted on the map');
}"""


def test_screenshots_are_where_the_readme_says(shots):
    if os.environ.get("SOUNDALIKE_SCREENSHOTS"):
        return
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = ("generate", "library", "sounds-like", "map", "likes-phone")
    for name in (f"explorer-{name}.png" for name in names):
        assert f"docs/img/{name}" in readme
        assert (Path(__file__).resolve().parents[2] / "docs" / "img" / name).exists()
