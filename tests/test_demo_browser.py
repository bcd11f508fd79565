"""The demo end to end in a real headless browser (Debian's Chromium driven by Playwright):
upload an image, click two points, add the region, ask about it, read the answer.

Needs /usr/bin/chromium (`scripts/test.sh` installs it). Without it the test is skipped with
the reason, unless REGIONVLM_REQUIRE_BROWSER=1 (set by `scripts/test.sh`), where it fails.
"""
import os
import shutil

import httpx
import pytest

from lavis_regionvlm.demo.server import mask_generator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("REGIONVLM_REQUIRE_BROWSER") != "1":
    pytest.skip("no chromium on this machine (apt-get install chromium, or run scripts/test.sh)",
                allow_module_level=True)

CLICKS = [(0.25, 0.45), (0.3, 0.55)]  # relative (x, y) on the red disc of `scene_png`


@pytest.fixture(scope="module")
def server(demo_server):
    return demo_server(mask_generator=mask_generator("tiny"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "REGIONVLM_REQUIRE_BROWSER=1 but chromium is not installed"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def open_with_image(browser, url, image_path):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(url)
    page.wait_for_function("window.demo && window.demo.info !== null")
    page.set_input_files("#image-input", str(image_path))
    page.wait_for_selector("#canvas[data-ready=true]")
    return page


def click_region(page, clicks):
    canvas = page.locator("#canvas")
    box = canvas.bounding_box()
    for x, y in clicks:
        canvas.click(position={"x": x * box["width"], "y": y * box["height"]})
    page.click("#add-region")


def test_click_two_points_ask_and_read_the_answer(browser, server, scene_png):
    page = open_with_image(browser, server.url, scene_png)
    click_region(page, CLICKS)
    page.wait_for_selector("#regions li[data-index='0']")

    region = page.evaluate("window.demo.regions[0]")
    assert len(region["region"]["points"]) == 2
    for (x, y), (cx, cy) in zip(region["region"]["points"], CLICKS):
        assert abs(x - cx) < 0.02 and abs(y - cy) < 0.02
    assert len(region["sent_points"]) == server.predictor.num_points  # the K points drawn on the canvas
    assert page.inner_text("#regions li[data-index='0'] code") == region["point_text"]

    page.fill("#message", "what is [0]?")
    page.click("#send")
    answer = page.wait_for_selector(".message.bot").inner_text()
    assert answer.strip()

    session = httpx.get(f"{server.url}/api/sessions/{page.evaluate('window.demo.session')}").json()
    assert session["turns"][0]["user"] == "what is [0]?"
    assert session["turns"][0]["answer"] == answer or (answer == "(empty answer)" and not session["turns"][0]["answer"])
    assert session["regions"][0]["point_text"] == region["point_text"]

    page.click("#regions li[data-index='0'] >> text=attention")
    page.wait_for_selector("#result:not([hidden])")
    assert page.get_attribute("#result-image", "src").startswith("data:image/png;base64,")

    page.click("#undo")  # the last region is referred to by a turn: the server refuses, the page says why
    page.wait_for_selector("#error:not([hidden])")
    assert "referred to by turn" in page.inner_text("#error")
    page.close()


def scribble_region(page, stroke):
    """Drag the mouse along `stroke` (relative points) in scribble mode, then add the region."""
    page.check("input[name=mode][value=scribble]")
    box = page.locator("#canvas").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=4)
    page.mouse.up()
    page.click("#add-region")


def test_scribble_segment_and_two_users_do_not_share_a_session(browser, server, scene_png):
    first = open_with_image(browser, server.url, scene_png)
    click_region(first, CLICKS)
    first.wait_for_selector("#regions li[data-index='0']")
    scribble_region(first, [(0.65, 0.4), (0.75, 0.5), (0.85, 0.6)])  # across the blue square
    first.wait_for_selector("#regions li[data-index='1']")
    stroke = first.evaluate("window.demo.regions[1].region.scribble")
    assert len(stroke) > 3 and abs(stroke[0][0] - 0.65) < 0.02 and abs(stroke[-1][1] - 0.6) < 0.02
    sent = first.evaluate("window.demo.regions[1].sent_points")
    assert len(sent) == server.predictor.num_points and all(0.6 <= x <= 0.9 for x, _ in sent)
    first.fill("#expression", "the red circle")
    first.click("#segment")
    first.wait_for_selector("#result:not([hidden])")
    assert "proposal" in first.inner_text("#result-caption")

    second = browser.new_context().new_page()
    second.goto(server.url)
    second.wait_for_function("window.demo && window.demo.info !== null")
    second.set_input_files("#image-input", str(scene_png))
    second.wait_for_selector("#canvas[data-ready=true]")
    assert second.evaluate("window.demo.session") != first.evaluate("window.demo.session")
    assert second.locator("#regions li").count() == 0
    first.close()
    second.close()
