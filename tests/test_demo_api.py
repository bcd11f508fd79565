"""The demo's JSON HTTP API over a real server (uvicorn on 127.0.0.1, real HTTP with httpx):
every operation gives what the predictor and chat give in-process, sessions are isolated,
and bad requests get a 4xx with a message that says what was wrong."""
import base64
import io
import os
import re
import subprocess
import sys

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.demo.server import add_demo_arguments, mask_generator
from lavis_regionvlm.demo.sessions import SessionStore, UnknownSessionError
from lavis_regionvlm.demo.uploads import UploadLimits
from lavis_regionvlm.interactive import Chat, RegionPredictor
from lavis_regionvlm.regions import text_to_points
from lavis_regionvlm.regions.masks import decode_rle

POINTS = {"points": [[0.2, 0.45], [0.27, 0.5]]}  # on the red disc of `scene_png`


@pytest.fixture(scope="module")
def server(demo_server):
    return demo_server(mask_generator=mask_generator("tiny"))


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def upload(client, path, name="scene.png"):
    response = client.post("/api/sessions", files={"image": (name, path.read_bytes(), "image/png")})
    assert response.status_code == 201, response.text
    return response.json()


def local_predictor(server, path) -> RegionPredictor:
    """An in-process predictor on the server's model, on the same image."""
    predictor = RegionPredictor(server.predictor.model, server.predictor.vis_processor)
    predictor.set_image(path)
    return predictor


def decode_png(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_info_reports_model_settings_and_limits(client):
    info = client.get("/api/info").json()
    assert info["model_type"] == "tiny" and info["num_points"] == 10 and info["segmentation"] is True
    assert info["limits"]["max_bytes"] == UploadLimits().max_bytes


def test_operations_match_the_predictor_and_chat_in_process(client, server, scene_png):
    summary = upload(client, scene_png)
    sid = summary["session"]
    local = local_predictor(server, scene_png)
    assert summary["image"] == {"width": 64, "height": 64, "sha256": local.image_sha256}

    record = client.post(f"/api/sessions/{sid}/regions", json={"region": POINTS}).json()
    assert record["index"] == 0 and record["point_text"] == local.region_text(POINTS)
    assert record["sent_points"] == text_to_points(record["point_text"]).tolist()
    assert len(record["sent_points"]) == 10

    caption = client.post(f"/api/sessions/{sid}/caption", json={"region": 0}).json()
    assert caption["caption"] == local.caption(POINTS)
    whole = client.post(f"/api/sessions/{sid}/ask", json={"question": "what is it?", "region": None}).json()
    assert whole == {"answer": local.ask("what is it?"), "point_text": ""}

    texts = ["a red circle", "a blue square"]
    losses = client.post(f"/api/sessions/{sid}/score", json={"texts": texts, "region": "[20 45] [27 50]"}).json()
    torch.testing.assert_close(torch.tensor(losses["losses"]), local.score(texts, "[20 45] [27 50]"),
                               atol=1e-4, rtol=1e-4)

    chat = Chat(local)
    chat.add_region(POINTS)
    for message in ("what is [0]?", "and what colour is [0]?"):
        reply = client.post(f"/api/sessions/{sid}/chat", json={"message": message}).json()
        assert reply["answer"] == chat.ask(message).answer and reply["dropped_turns"] == 0

    exported = client.get(f"/api/sessions/{sid}/export")
    assert "attachment" in exported.headers["content-disposition"]
    session = exported.json()
    assert [t["user"] for t in session["turns"]] == ["what is [0]?", "and what colour is [0]?"]
    assert Chat.replay(session, local) == [t["answer"] for t in session["turns"]]

    reset = client.post(f"/api/sessions/{sid}/reset", json={"keep_regions": True}).json()
    assert reset["turns"] == [] and len(reset["regions"]) == 1


def test_a_region_added_as_point_text_is_stored_and_read_as_given(client, server, scene_png):
    sid = upload(client, scene_png)["session"]
    record = client.post(f"/api/sessions/{sid}/regions", json={"region": "[29 57] [58 14]"}).json()
    # not redrawn as "[28 56] [28 56] ..." (0.29 * 100 = 28.999..., floored, repeated to K)
    assert record["region"] == {"point_text": "[29 57] [58 14]"} and record["point_text"] == "[29 57] [58 14]"
    assert record["sent_points"] == [[0.29, 0.57], [0.58, 0.14]]
    local = local_predictor(server, scene_png)
    caption = client.post(f"/api/sessions/{sid}/caption", json={"region": 0}).json()
    assert caption == {"caption": local.caption("[29 57] [58 14]"), "point_text": "[29 57] [58 14]"}
    whole = client.post(f"/api/sessions/{sid}/caption", json={"region": ""}).json()
    assert whole == {"caption": local.caption(None), "point_text": ""}
    assert client.get(f"/api/sessions/{sid}/export").json()["regions"] == [{"point_text": "[29 57] [58 14]"}]


def test_segment_scores_the_expression_as_the_ris_evaluation(client, scene_png):
    sid = upload(client, scene_png)["session"]
    results = [client.post(f"/api/sessions/{sid}/segment", json={"expression": e}).json()
               for e in ("The red circle.", "the red circle")]
    assert results[0]["scores"] == results[1]["scores"] and len(results[0]["scores"]) > 0


def test_segment_and_attention_return_pictures(client, server, scene_png):
    sid = upload(client, scene_png)["session"]
    result = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the red circle"}).json()
    assert result["proposal"] >= 0 and len(result["scores"]) == len(result["proposal_ids"]) > 0
    assert decode_rle(result["rle"]).shape == (64, 64)
    assert decode_png(result["overlay"]).size == (64, 64)

    local = local_predictor(server, scene_png)
    attention = client.post(f"/api/sessions/{sid}/attention", json={"region": POINTS}).json()
    assert attention["point_text"] == local.region_text(POINTS)
    expected = local.attention_map(POINTS).overlay(local.image, points=True)
    assert np.array_equal(np.asarray(decode_png(attention["overlay"]).convert("RGB")), np.asarray(expected))


def test_sessions_are_isolated_and_undo_respects_the_history(client, scene_png):
    first, second = upload(client, scene_png)["session"], upload(client, scene_png)["session"]
    assert first != second and len(first) >= 22
    client.post(f"/api/sessions/{first}/regions", json={"region": POINTS})
    client.post(f"/api/sessions/{first}/chat", json={"message": "what is [0]?"})
    other = client.get(f"/api/sessions/{second}").json()
    assert other["regions"] == [] and other["turns"] == []
    response = client.post(f"/api/sessions/{second}/chat", json={"message": "what is [0]?"})
    assert response.status_code == 400 and "refers to [0], but the chat has no regions" in response.json()["error"]

    refused = client.delete(f"/api/sessions/{first}/regions/last")
    assert refused.status_code == 409 and "referred to by turn(s) [0]" in refused.json()["error"]
    client.post(f"/api/sessions/{first}/reset", json={})
    assert client.get(f"/api/sessions/{first}").json()["regions"] == []  # reset without keep_regions
    assert client.delete(f"/api/sessions/{second}").status_code == 204
    assert client.get(f"/api/sessions/{second}").status_code == 404


@pytest.mark.parametrize("path, body, status, message", [
    ("chat", b"{not json", 422, "the body is not valid JSON (at character 1)"),
    ("chat", {"question": "hi"}, 422, "malformed request: message: Field required"),
    ("chat", {"message": "  "}, 400, "empty message"),
    ("caption", {"region": 7}, 400, "region index 7: the session has no regions yet"),
    ("caption", {"region": "[1 2"}, 400, "not region JSON"),
    ("caption", {"region": {"box": [0.5, 0.5, 0.1]}}, 400, "box"),
    ("score", {"texts": []}, 422, "texts: List should have at least 1 item"),
    ("regions", {"region": None}, 400, "give the region itself"),
])
def test_malformed_requests_get_a_4xx_with_a_clear_message(client, scene_png, path, body, status, message):
    sid = upload(client, scene_png)["session"]
    if isinstance(body, bytes):
        response = client.post(f"/api/sessions/{sid}/{path}", content=body,
                               headers={"content-type": "application/json"})
    else:
        response = client.post(f"/api/sessions/{sid}/{path}", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_unknown_sessions_and_bad_uploads(client, tmp_path):
    response = client.post("/api/sessions/no-such-id/chat", json={"message": "hi"})
    assert response.status_code == 404 and "no session 'no-such-id'" in response.json()["error"]
    for name, data, message in (("notes.txt", b"hello", "is not an image file"), ("empty.png", b"", "is empty")):
        response = client.post("/api/sessions", files={"image": (name, data, "image/png")})
        assert response.status_code == 400 and message in response.json()["error"]
    response = client.post("/api/sessions", data={"other": "x"})
    assert response.status_code == 422 and "image: Field required" in response.json()["error"]


def test_upload_limits_answer_413(demo_server, tmp_path):
    server = demo_server(limits=UploadLimits(max_bytes=20_000, max_pixels=10_000, max_side=200))
    noisy = tmp_path / "noisy.png"
    Image.fromarray((np.random.default_rng(0).random((90, 90, 3)) * 255).astype(np.uint8)).save(noisy)
    wide = tmp_path / "wide.png"
    Image.new("RGB", (300, 10)).save(wide)
    big = tmp_path / "big.png"
    Image.new("RGB", (150, 150)).save(big)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for path, message in ((noisy, "larger than the upload limit of 0.0 MiB"), (wide, "300x10 pixels"),
                              (big, "150x150 pixels (0.0 MP)")):
            response = http.post("/api/sessions", files={"image": (path.name, path.read_bytes(), "image/png")})
            assert response.status_code == 413 and message in response.json()["error"], response.text
        huge = http.post("/api/sessions", content=b"x" * 200_000, headers={"content-type": "application/octet-stream"})
        assert huge.status_code == 413 and "over the upload limit" in huge.json()["error"]


def test_segmentation_off_without_sam(demo_server, scene_png):
    server = demo_server()
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get("/api/info").json()["segmentation"] is False
        sid = upload(http, scene_png)["session"]
        response = http.post(f"/api/sessions/{sid}/segment", json={"expression": "the disc"})
        assert response.status_code == 409 and "--sam-checkpoint" in response.json()["error"]


def test_page_and_schema_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="canvas"' in page.text and "/static/demo.js" in page.text
    assert client.get("/static/demo.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/sessions", "/api/sessions/{session_id}/chat", "/api/sessions/{session_id}/attention"} <= set(schema["paths"])


def test_session_store_drops_least_recently_used_and_idle_sessions(scene_png):
    predictor = RegionPredictor.from_pretrained("tiny")
    now = [0.0]
    store = SessionStore(predictor, max_sessions=2, idle_seconds=100, clock=lambda: now[0])
    image = Image.open(scene_png).convert("RGB")
    a, b = store.create(image), store.create(image)
    store.get(a.id)  # a is now the most recently used
    c = store.create(image)
    assert len(store) == 2
    with pytest.raises(UnknownSessionError, match="never existed, was deleted, or expired"):
        store.get(b.id)
    now[0] = 50.0
    store.get(c.id)
    now[0] = 120.0  # a idle for 120 s, c for 70 s
    with pytest.raises(UnknownSessionError):
        store.get(a.id)
    assert store.get(c.id) is c


@pytest.mark.parametrize("model", ["blip2_t5_region", "blip2_opt_region"])
def test_demo_binds_localhost_by_default_and_the_cli_serves(scene_png, model):
    """`regionvlm demo --model NAME` serves that model (its answer is the local predictor's)."""
    import argparse

    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lavis_regionvlm.cli", "demo", "--model", model, "--model-type", "tiny", "--port", "0",
         "--sam-type", "tiny", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            found = re.search(r"RegionVLM demo on (http://127\.0\.0\.1:\d+)", line)
            if found:
                break
        assert found, "".join(lines)[-3000:]
        with httpx.Client(base_url=found.group(1), timeout=60) as http:
            info = http.get("/api/info").json()
            assert info["model_type"] == "tiny" and info["segmentation"] is True
            sid = upload(http, scene_png)["session"]
            answer = http.post(f"/api/sessions/{sid}/ask", json={"question": "what is it?"}).json()["answer"]
        local = RegionPredictor.from_pretrained("tiny", name=model)
        local.set_image(scene_png)
        assert answer == local.ask("what is it?")
    finally:
        process.terminate()
        process.wait(30)


def test_bad_demo_options_exit_2(capsys):
    from lavis_regionvlm.cli import main

    assert main(["demo", "--model-type", "tiny", "--sam-checkpoint", "sam.pth"]) == 2
    assert "--sam-checkpoint needs --sam-type" in capsys.readouterr().err
