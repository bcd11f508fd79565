"""The demo's region tools over a real server (issue 18): SAM click-to-mask (/sam) with the
tiny random-weight SAM against segment-anything's own `SamPredictor` run in-process, mask PNG
upload (/regions/mask), boxes, and /segment's top proposals; every bad input a 4xx that
names the field or the limit."""
import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from lavis_regionvlm.demo import UploadLimits
from lavis_regionvlm.demo.limits import RequestLimits
from lavis_regionvlm.demo.server import mask_generator
from lavis_regionvlm.regions.masks import decode_rle

CLICK = [0.25, 0.5]  # on the red disc of `scene_png`


@pytest.fixture(scope="module")
def generator():
    return mask_generator("tiny")


@pytest.fixture(scope="module")
def server(demo_server, generator):
    return demo_server(mask_generator=generator)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


@pytest.fixture
def sid(client, scene_png):
    response = client.post("/api/sessions", files={"image": ("scene.png", scene_png.read_bytes(), "image/png")})
    assert response.status_code == 201, response.text
    return response.json()["session"]


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def inside(points, mask: np.ndarray, slack_px: float = 1.0) -> bool:
    """Every relative (x, y) lies within `slack_px` pixels of a mask pixel (the point text
    rounds to 1/100 of the side)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    centres = np.stack([(xs + 0.5) / width, (ys + 0.5) / height], axis=1)
    for x, y in points:
        distance = np.hypot((centres[:, 0] - x) * width, (centres[:, 1] - y) * height).min()
        if distance > 0.5 * np.sqrt(2) + slack_px:
            return False
    return True


def test_info_says_click_to_mask_is_on(client):
    assert client.get("/api/info").json()["click_to_mask"] is True


def test_sam_clicks_give_samPredictors_mask_refined_with_its_logits(client, sid, generator, scene_png):
    from segment_anything import SamPredictor

    encoder_calls = []
    hook = generator.predictor.model.image_encoder.register_forward_hook(lambda *a: encoder_calls.append(1))
    try:
        first = client.post(f"/api/sessions/{sid}/sam", json={"points": [CLICK]}).json()
        prompt = {"points": [CLICK, [0.8, 0.5]], "labels": [1, 0]}
        second = client.post(f"/api/sessions/{sid}/sam", json=prompt).json()
        again = client.post(f"/api/sessions/{sid}/sam", json=prompt).json()
        fresh = client.post(f"/api/sessions/{sid}/sam", json={"points": [[0.8, 0.5]], "box": [0.5, 0.2, 1, 0.8]}).json()
    finally:
        hook.remove()
    assert len(encoder_calls) == 1  # the image embedding: once per session, kept

    local = SamPredictor(generator.predictor.model)  # segment-anything's own predictor, in-process
    local.set_image(np.asarray(Image.open(scene_png).convert("RGB")))
    masks, scores, logits = local.predict(np.array([[16.0, 32.0]]), np.array([1]), multimask_output=True)
    best = int(np.argmax(scores))
    assert first["refined"] is False and first["rle"]["size"] == [64, 64]
    assert np.array_equal(decode_rle(first["rle"]), masks[best]) and first["score"] == round(float(scores[best]), 5)

    masks, scores, _ = local.predict(np.array([[16.0, 32.0], [51.2, 32.0]]), np.array([1, 0]),
                                     mask_input=logits[best][None], multimask_output=False)
    assert second["refined"] is True
    assert np.array_equal(decode_rle(second["rle"]), masks[0]) and second["score"] == round(float(scores[0]), 5)
    assert again == second  # the same prompt twice: the same answer

    masks, _, _ = local.predict(np.array([[51.2, 32.0]]), np.array([1]), box=np.array([32.0, 12.8, 64, 51.2]),
                                multimask_output=False)
    assert fresh["refined"] is False and np.array_equal(decode_rle(fresh["rle"]), masks[0])


def test_a_sam_mask_added_as_a_region_has_its_points_inside(client, sid):
    rle = client.post(f"/api/sessions/{sid}/sam", json={"points": [CLICK]}).json()["rle"]
    mask = decode_rle(rle)
    assert mask.any()
    record = client.post(f"/api/sessions/{sid}/regions", json={"region": {"rle": rle}}).json()
    assert np.array_equal(decode_rle(record["region"]["rle"]), mask)
    assert len(record["sent_points"]) == 10 and inside(record["sent_points"], mask)


def test_box_region_points_lie_in_the_box(client, sid):
    record = client.post(f"/api/sessions/{sid}/regions", json={"region": {"box": [0.55, 0.3, 0.95, 0.7]}}).json()
    assert record["region"] == {"box": [0.55, 0.3, 0.95, 0.7]}
    assert all(0.55 <= x <= 0.95 and 0.3 <= y <= 0.7 for x, y in record["sent_points"])


@pytest.mark.parametrize("body, status, message", [
    ({}, 400, "points / box: give at least one click or a box"),
    ({"points": [[0.2, 0.3], [0.4, 0.5]], "labels": [1]}, 400, "labels: 1 labels for 2 points"),
    ({"points": [[0.2, 0.3]], "labels": [2]}, 400, "labels[0]: a label is 1 (on the object) or 0"),
    ({"points": [[0.2, 1.5]]}, 400, "points[0]: coordinates are relative to the image"),
    ({"points": [[0.2, 0.3, 0.4]]}, 400, "points[0]: a point is [x, y], got 3 numbers"),
    ({"box": [0.5, 0.5, 0.2, 0.9]}, 400, "box: needs x1 < x2 and y1 < y2"),
    ({"box": [0.5, 0.5, 0.9]}, 400, "box: a box is [x1, y1, x2, y2], got 3 numbers"),
    ({"points": "here"}, 422, "malformed request: points: Input should be a valid list"),
    (b'{"points": [[NaN, 0.5]]}', 400, "points[0]: coordinates are relative to the image, finite numbers"),
    ({"points": [[0.1, 0.1]] * 33}, 413, "points: 33 clicks, over the limit of 32 (server option --max-sam-clicks)"),
])
def test_bad_sam_prompts_get_a_4xx_naming_the_field(client, sid, body, status, message):
    if isinstance(body, bytes):
        response = client.post(f"/api/sessions/{sid}/sam", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(f"/api/sessions/{sid}/sam", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def upload_mask(client, sid, data: bytes, name="mask.png"):
    return client.post(f"/api/sessions/{sid}/regions/mask", files={"mask": (name, data, "image/png")})


def test_mask_upload_adds_its_non_zero_pixels_as_a_region(client, sid):
    grey = Image.new("L", (64, 64))
    ImageDraw.Draw(grey).rectangle((40, 24, 55, 39), fill=255)  # columns 40..55, rows 24..39
    expected = np.asarray(grey) > 0
    response = upload_mask(client, sid, png(grey))
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["index"] == 0 and np.array_equal(decode_rle(record["region"]["rle"]), expected)
    assert inside(record["sent_points"], expected)

    rgba = Image.new("RGBA", (64, 64), (255, 255, 255, 0))  # white object on transparent white
    ImageDraw.Draw(rgba).rectangle((40, 24, 55, 39), fill=(255, 255, 255, 255))
    assert np.array_equal(decode_rle(upload_mask(client, sid, png(rgba)).json()["region"]["rle"]), expected)
    black = Image.new("RGB", (64, 64))  # white on opaque black, as RGB
    ImageDraw.Draw(black).rectangle((40, 24, 55, 39), fill=(255, 255, 255))
    assert np.array_equal(decode_rle(upload_mask(client, sid, png(black)).json()["region"]["rle"]), expected)
    half = Image.new("1", (32, 32))  # the image's size scaled down
    ImageDraw.Draw(half).rectangle((20, 12, 27, 19), fill=1)
    record = upload_mask(client, sid, png(half)).json()
    assert decode_rle(record["region"]["rle"]).shape == (32, 32)
    assert inside(record["sent_points"], expected)
    assert len(client.get(f"/api/sessions/{sid}").json()["regions"]) == 4


def test_bad_mask_uploads_get_a_4xx_saying_why(client, sid):
    square = Image.new("L", (64, 64))
    ImageDraw.Draw(square).rectangle((10, 10, 20, 20), fill=255)
    for data, message in (
        (png(square.convert("RGB"), "JPEG"), "is not a PNG file"),
        (png(Image.new("L", (64, 40), 255)), "is 64x40 pixels, the image is 64x64: a mask must have the image's size"),
        (png(Image.new("L", (64, 64))), "has no non-zero pixel"),
        (png(square)[:60], "truncated or corrupt"),
        (b"", "is not a PNG file"),
    ):
        response = upload_mask(client, sid, data)
        assert response.status_code == 400 and message in response.json()["error"], response.text
    response = client.post(f"/api/sessions/{sid}/regions/mask", data={"other": "x"})
    assert response.status_code == 422 and "mask: Field required" in response.json()["error"]
    assert client.get(f"/api/sessions/{sid}").json()["regions"] == []


def test_segment_lists_the_top_proposals_with_their_masks(client, sid, generator, scene_png):
    result = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the red circle", "top": 3}).json()
    top = result["top"]
    assert 1 <= len(top) == min(3, len(result["proposal_ids"]))
    assert top[0]["proposal"] == result["proposal"]
    assert [t["score"] for t in top] == sorted(round(s, 5) for s in result["scores"])[:len(top)]
    proposals = generator.generate(np.asarray(Image.open(scene_png).convert("RGB")))
    for entry in top:
        assert np.array_equal(decode_rle(entry["rle"]), decode_rle(proposals[entry["proposal"]]["segmentation"]))
    assert np.array_equal(decode_rle(top[0]["rle"]), decode_rle(result["rle"]))  # the 64 px image is its work size
    response = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the red circle", "top": 11})
    assert response.status_code == 413 and "(server option --max-top-proposals)" in response.json()["error"]
    response = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the red circle", "top": -1})
    assert response.status_code == 422 and "top:" in response.json()["error"]


def test_limits_of_the_region_tools_name_their_options(demo_server, scene_png):
    server = demo_server(mask_generator=mask_generator("tiny"), limits=UploadLimits(max_bytes=6000),
                         requests=RequestLimits(max_mask_pixels=1000, max_sam_clicks=2, max_regions=1,
                                                max_work_side=16))
    with httpx.Client(base_url=server.url, timeout=120) as http:
        image = {"image": ("s.png", scene_png.read_bytes(), "image/png")}
        sid = http.post("/api/sessions", files=image).json()["session"]
        response = upload_mask(http, sid, png(Image.new("L", (64, 64), 255)))
        assert response.status_code == 413 and "(server option --max-mask-mp)" in response.json()["error"]
        noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
        response = upload_mask(http, sid, png(Image.fromarray(noise)))
        assert response.status_code == 413 and "(server option --max-upload-mb)" in response.json()["error"]
        response = http.post(f"/api/sessions/{sid}/sam", json={"points": [CLICK] * 3})
        assert response.status_code == 413 and "--max-sam-clicks" in response.json()["error"]
        sam = http.post(f"/api/sessions/{sid}/sam", json={"points": [CLICK]}).json()
        assert sam["rle"]["size"] == [16, 16]  # SAM works at --max-work-side, not the image's 64 px
        assert upload_mask(http, sid, png(Image.new("L", (16, 16), 255))).status_code == 201
        response = upload_mask(http, sid, png(Image.new("L", (16, 16), 255)))
        assert response.status_code == 409 and "--max-regions" in response.json()["error"]


def test_click_to_mask_off_without_sam(demo_server, scene_png):
    server = demo_server()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/api/info").json()["click_to_mask"] is False
        image = {"image": ("s.png", scene_png.read_bytes(), "image/png")}
        sid = http.post("/api/sessions", files=image).json()["session"]
        response = http.post(f"/api/sessions/{sid}/sam", json={"points": [CLICK]})
        assert response.status_code == 409 and "--sam-type" in response.json()["error"]


def test_a_mask_upload_has_the_upload_limit_not_the_json_body_limit(demo_server, scene_png):
    server = demo_server(mask_generator=None, requests=RequestLimits(max_body_bytes=4096))
    noise = png(Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)))
    assert len(noise) > 4096 * 2
    with httpx.Client(base_url=server.url, timeout=120) as http:
        image = {"image": ("s.png", scene_png.read_bytes(), "image/png")}
        sid = http.post("/api/sessions", files=image).json()["session"]
        response = upload_mask(http, sid, noise)
        assert response.status_code == 201, response.text
        response = http.post(f"/api/sessions/{sid}/sam", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert response.status_code == 413 and "--max-body-mb" in response.json()["error"]
