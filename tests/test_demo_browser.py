"""The demo end to end in a real headless browser (Debian's Chromium driven by Playwright):
upload an image, click two points, add the region, ask about it, read the answer; then each
region tool with the mouse and keys (box drag, SAM clicks with the tiny SAM, mask upload,
the segmentation overlay), checking what reaches the server.

Needs /usr/bin/chromium (`scripts/test.sh` installs it). Without it the test is skipped with
the reason, unless REGIONVLM_REQUIRE_BROWSER=1 (set by `scripts/test.sh`), where it fails.
"""
import os
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from lavis_regionvlm.demo.server import mask_generator
from lavis_regionvlm.regions.masks import decode_rle

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
    first.wait_for_selector("#segmentation:not([hidden])")
    assert "proposal" in first.inner_text("#segmentation-caption")

    second = browser.new_context().new_page()
    second.goto(server.url)
    second.wait_for_function("window.demo && window.demo.info !== null")
    second.set_input_files("#image-input", str(scene_png))
    second.wait_for_selector("#canvas[data-ready=true]")
    assert second.evaluate("window.demo.session") != first.evaluate("window.demo.session")
    assert second.locator("#regions li").count() == 0
    first.close()
    second.close()


def near_mask(points, mask: np.ndarray, slack_px: float = 1.0) -> bool:
    """Every relative (x, y) lies within `slack_px` pixels of a pixel of `mask` (the point
    text rounds to 1/100 of the side)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    return all(np.hypot((xs + 0.5) - x * width, (ys + 0.5) - y * height).min() <= 0.75 + slack_px for x, y in points)


def drag(page, start, end):
    box = page.locator("#canvas").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in (start, end)]
    page.mouse.move(*at[0])
    page.mouse.down()
    page.mouse.move(*at[1], steps=5)
    page.mouse.up()


def click_at(page, point, **options):
    box = page.locator("#canvas").bounding_box()
    page.locator("#canvas").click(position={"x": point[0] * box["width"], "y": point[1] * box["height"]}, **options)


def wait_for_sam(page, clicks):
    """Wait until the page shows SAM's answer to a prompt of `clicks` clicks."""
    page.wait_for_function(f"window.demo.sam.points.length === {clicks} && window.demo.sam.result !== null "
                           f"&& window.demo.busy === 0")


def test_region_tools_box_sam_mask_upload_overlay_and_keys(browser, server, scene_png, tmp_path):
    page = open_with_image(browser, server.url, scene_png)
    sid = page.evaluate("window.demo.session")
    stored = lambda: httpx.get(f"{server.url}/api/sessions/{sid}").json()["regions"]  # noqa: E731

    # box: drag a rectangle around the blue square; Enter adds it
    page.check("input[name=mode][value=box]")
    drag(page, (0.55, 0.3), (0.95, 0.7))
    page.keyboard.press("Enter")
    page.wait_for_selector("#regions li[data-index='0']")
    box = stored()[0]
    assert np.allclose(box["region"]["box"], [0.55, 0.3, 0.95, 0.7], atol=0.02)
    assert all(0.53 <= x <= 0.97 and 0.28 <= y <= 0.72 for x, y in box["sent_points"])

    # SAM: a click on the disc, a right click (negative) off it: the second refines the first
    page.check("input[name=mode][value=sam]")
    click_at(page, (0.25, 0.5))
    wait_for_sam(page, 1)
    assert page.evaluate("window.demo.sam.result.refined") is False
    click_at(page, (0.8, 0.5), button="right")
    wait_for_sam(page, 2)
    sam = page.evaluate("window.demo.sam")
    assert sam["labels"] == [1, 0] and sam["result"]["refined"] is True
    assert np.allclose(sam["points"], [(0.25, 0.5), (0.8, 0.5)], atol=0.02)
    again = httpx.post(f"{server.url}/api/sessions/{sid}/sam",
                       json={"points": sam["points"], "labels": [1, 0]}).json()
    assert again == sam["result"]  # what the page shows is the server's answer to that prompt
    mask = decode_rle(sam["result"]["rle"])
    js_mask = page.evaluate("Array.from(window.decodeRle(window.demo.sam.result.rle))")
    assert np.array_equal(np.array(js_mask, bool), mask.flatten(order="F"))  # the page decodes RLE as pycocotools

    page.keyboard.press("Control+z")  # undo the negative click: SAM runs again on the first click alone
    wait_for_sam(page, 1)
    assert page.evaluate("window.demo.sam.result.refined") is False
    page.keyboard.press("Escape")  # cancel the region being drawn
    assert page.evaluate("window.demo.sam.points.length === 0 && window.demo.sam.result === null")
    assert page.is_disabled("#add-region")

    click_at(page, (0.25, 0.5))
    wait_for_sam(page, 1)
    click_at(page, (0.8, 0.5), modifiers=["Shift"])  # shift-click: also negative
    wait_for_sam(page, 2)
    page.click("#add-region")
    page.wait_for_selector("#regions li[data-index='1']")
    sam_region = stored()[1]
    mask = decode_rle(page.evaluate("window.demo.regions[1].region.rle"))
    assert np.array_equal(decode_rle(sam_region["region"]["rle"]), mask)
    assert page.evaluate("window.demo.sam.points.length") == 0
    assert near_mask(sam_region["sent_points"], mask)  # the K points are drawn inside SAM's mask

    # mask upload: the non-zero pixels of a PNG
    picture = Image.new("L", (64, 64))
    ImageDraw.Draw(picture).rectangle((8, 4, 27, 15), fill=255)
    path = tmp_path / "top_left.png"
    picture.save(path)
    page.set_input_files("#mask-input", str(path))
    page.wait_for_selector("#regions li[data-index='2']")
    uploaded = stored()[2]
    assert np.array_equal(decode_rle(uploaded["region"]["rle"]), np.asarray(picture) > 0)
    assert near_mask(uploaded["sent_points"], np.asarray(picture) > 0)
    assert page.inner_text("#regions li[data-index='2'] .kind") == "mask"

    page.hover("#regions li[data-index='1']")  # hovering a row highlights its region
    assert page.evaluate("window.demo.highlight") == 1
    assert "highlight" in page.get_attribute("#regions li[data-index='1']", "class")
    page.mouse.move(0, 0)
    assert page.evaluate("window.demo.highlight") is None

    # segment by text: the chosen mask drawn on the image, the top proposals listed with scores
    page.fill("#expression", "the red circle")
    page.press("#expression", "Enter")
    page.wait_for_selector("#segmentation:not([hidden])")
    reply = page.evaluate("window.demo.segmentation.reply")
    buttons = page.locator("#proposals button")
    assert buttons.count() == len(reply["top"]) >= 1
    assert f"{reply['top'][0]['score']:.3f} (chosen)" in buttons.nth(0).inner_text()
    assert buttons.nth(0).get_attribute("aria-pressed") == "true"
    shown = page.evaluate("Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)")
    buttons.nth(0).click()  # click the shown proposal again: hidden
    assert page.evaluate("window.demo.segmentation.shown") is None
    hidden = page.evaluate("Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)")
    width, height = page.evaluate("[canvas.width, canvas.height]")
    changed = np.any(np.array(shown).reshape(height, width, 4) != np.array(hidden).reshape(height, width, 4), axis=2)
    chosen = decode_rle(reply["top"][0]["rle"])
    ys, xs = np.nonzero(changed)
    assert len(ys) > 0 and chosen[ys * 64 // height, xs * 64 // width].all()  # exactly where the mask is

    page.fill("#message", "what is [1]?")
    page.press("#message", "Enter")  # Enter sends
    page.wait_for_selector(".message.bot")
    assert httpx.get(f"{server.url}/api/sessions/{sid}").json()["turns"][0]["user"] == "what is [1]?"
    page.close()
