"""The demo's limits, one request each (issue 14), over a real server on 127.0.0.1: every
request bounded in memory and time, every refusal a 4xx JSON `{"error": ...}` naming the
limit and its option, every error (500 included) in that shape, images read upright and
whole, sessions consistent under concurrent requests, connections bounded."""
import io
import json
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image

from lavis_regionvlm.demo import DemoConfig, UploadLimits, create_app, start_server
from lavis_regionvlm.demo.guard import INTERNAL_ERROR
from lavis_regionvlm.demo.limits import RequestLimits
from lavis_regionvlm.demo.server import ServerLimits, mask_generator
from lavis_regionvlm.interactive import RegionPredictor
from lavis_regionvlm.regions.masks import decode_rle, mask_to_rle

SMALL = RequestLimits(max_body_bytes=64 * 1024, max_text_tokens=16, max_score_texts=4, max_mask_pixels=1_000_000,
                      max_regions=40, max_work_side=48, body_timeout_s=2.0)
POINTS = {"points": [[0.2, 0.45], [0.27, 0.5]]}


class RecordingGenerator:
    """SAM's real (tiny) mask generator, recording the shape of every image it is given;
    `fail` makes it raise (a stand-in for any bug inside a request)."""

    def __init__(self, generator):
        self.generator, self.shapes, self.fail = generator, [], False

    def generate(self, image):
        if self.fail:
            raise RuntimeError("a bug deep inside segmentation")
        self.shapes.append(image.shape)
        return self.generator.generate(image)


@pytest.fixture(scope="module")
def predictor():
    return RegionPredictor.from_pretrained("tiny")


@pytest.fixture(scope="module")
def serve(predictor):
    """(server_limits=..., **DemoConfig fields) -> a running server (stopped at the end)."""
    running = []

    def start(server_limits=ServerLimits(), **config):
        server = start_server(create_app(predictor, DemoConfig(**config)), limits=server_limits)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def generator():
    return RecordingGenerator(mask_generator("tiny"))


@pytest.fixture(scope="module")
def server(serve, generator):
    return serve(requests=SMALL, limits=UploadLimits(max_bytes=100_000), mask_generator=generator)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def png_bytes(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def new_session(client, data: bytes, name="scene.png"):
    response = client.post("/api/sessions", files={"image": (name, data, "image/png")})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def sid(client, scene_png):
    return new_session(client, scene_png.read_bytes())["session"]


def raw_exchange(url: str, head: bytes, chunks=(), timeout=30.0):
    """Send `head` then each of `chunks` over a fresh socket, stopping early when the server
    answers; returns (status, JSON body or text, bytes of `chunks` sent)."""
    address = urlparse(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=timeout)
    sent = 0
    try:
        sock.sendall(head)
        sock.setblocking(False)
        for chunk in chunks:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break  # the server has answered
            except BlockingIOError:
                pass
            try:
                sock.setblocking(True)
                sock.settimeout(timeout)
                sock.sendall(chunk)
                sent += len(chunk)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    finally:
        sock.close()
    head_part, _, body = data.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    try:
        return status, json.loads(body), sent
    except ValueError:
        return status, body.decode("latin-1"), sent


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 62


def host_of(url: str) -> str:
    return urlparse(url).netloc


# ---------------------------------------------------------------- 1. polygons far outside the canvas

def test_polygon_clipping_keeps_memory_bounded():
    """pycocotools walks every edge pixel by pixel: a vertex at 1e9 would need ~78 GB. Run in a
    child process whose address space is capped at +1.5 GB over its start."""
    code = """
import resource, numpy as np
from lavis_regionvlm.regions.masks import polygons_to_mask
with open('/proc/self/statm') as f:
    pages = int(f.read().split()[0])
cap = pages * resource.getpagesize() + 1536 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
for far in (1e7, 1e9, 1e308):
    mask = polygons_to_mask([[1, 1, far, 1, 5, 5]], 10, 10)
    assert mask.shape == (10, 10) and mask[1:5, 5:].all() and not mask[5:].any(), mask.astype(int)
empty = polygons_to_mask([[-1e9, -1e9, -1e9 + 5, -1e9, -1e9, -1e9 + 5]], 10, 10)
assert not empty.any()
rect = polygons_to_mask([[2, 2, 1e12, 2, 1e12, 6, 2, 6]], 10, 10)
expected = np.zeros((10, 10), bool); expected[2:6, 2:] = True
assert np.array_equal(rect, expected), rect.astype(int)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_caption_of_a_polygon_vertex_far_outside_answers(client, sid, predictor):
    from pycocotools import mask as mask_utils

    # the same triangle with its far vertex at 1e4 (cheap for pycocotools as it stands)
    near = mask_utils.decode(mask_utils.frPyObjects([[1, 1, 1e4, 1, 5, 5]], 10, 10)[0]).astype(bool)
    local = RegionPredictor(predictor.model, predictor.vis_processor)
    expected = local.region_text({"rle": mask_to_rle(near)})
    for far in (1e9, 1e308):
        region = {"polygons": [[1, 1, far, 1, 5, 5]], "height": 10, "width": 10}
        response = client.post(f"/api/sessions/{sid}/caption", json={"region": region})
        assert response.status_code == 200, response.text
        assert response.json()["point_text"] == expected


# ---------------------------------------------------------------- 2. text lengths, in tokens

def test_long_texts_are_refused_naming_the_option(client, sid, predictor):
    long_question = " ".join(["word"] * 40)
    tokens = len(predictor.model.t5_tokenizer(long_question, add_special_tokens=False)["input_ids"])
    assert tokens > 16
    for path, body, message in (
        ("ask", {"question": long_question}, f"question is {tokens} tokens, over the limit of 16 (server option --max-text-tokens)"),
        ("ask", {"question": "x" * 100_000}, None),  # over the body limit first
        ("ask", {"question": "y" * 20_000}, "question is 20000 characters, far over the limit of 16 tokens"),
        ("score", {"texts": ["a"] * 5}, "5 texts, over the limit of 4 a request (server option --max-score-texts)"),
        ("score", {"texts": ["a dog", long_question]}, f"texts[1] is {tokens} tokens"),
        ("segment", {"expression": long_question}, f"expression is {tokens} tokens"),
    ):
        response = client.post(f"/api/sessions/{sid}/{path}", json=body)
        assert response.status_code == 413, response.text
        assert message is None or message in response.json()["error"]
    assert "--max-body-mb" in client.post(f"/api/sessions/{sid}/ask", json={"question": "x" * 100_000}).json()["error"]
    ok = client.post(f"/api/sessions/{sid}/score", json={"texts": ["a red disc", "a blue square"]})
    assert ok.status_code == 200 and len(ok.json()["losses"]) == 2
    assert client.post(f"/api/sessions/{sid}/ask", json={"question": "what is it?"}).status_code == 200


def test_json_bodies_are_counted_while_they_stream(server):
    """A chunked body (no Content-Length) over --max-body-mb is refused once the limit is
    passed, not after it has all arrived."""
    head = (f"POST /api/info HTTP/1.1\r\nHost: {host_of(server.url)}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    status, body, sent = raw_exchange(server.url, head, [chunk] * 512)  # 32 MiB offered
    assert status == 413 and "over the body limit of 65536 bytes (server option --max-body-mb)" in body["error"]
    assert sent < 16 * 2**20


# ---------------------------------------------------------------- 3. segmentation at a bounded resolution

def test_segment_runs_sam_on_a_bounded_copy_and_scales_the_mask_back(client, generator, scene_png):
    big = Image.open(scene_png).convert("RGB").resize((96, 64))  # long side 96 > max_work_side 48
    sid = new_session(client, png_bytes(big))["session"]
    generator.shapes.clear()
    result = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the red circle"})
    assert result.status_code == 200, result.text
    assert generator.shapes == [(32, 48, 3)]
    reply = result.json()
    assert reply["proposal"] >= 0 and decode_rle(reply["rle"]).shape == (64, 96)
    overlay = Image.open(io.BytesIO(__import__("base64").b64decode(reply["overlay"].split(",", 1)[1])))
    assert overlay.size == (48, 32)


# ---------------------------------------------------------------- 4. uploads counted while streaming

def test_chunked_upload_is_refused_once_over_the_limit(server):
    """No Content-Length: the old server spooled the whole body to /tmp before answering."""
    boundary = "b0undary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n"
             "Content-Type: image/png\r\n\r\n").encode()
    head = (f"POST /api/sessions HTTP/1.1\r\nHost: {host_of(server.url)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunks = [b"%x\r\n%s\r\n" % (len(start), start)] + [b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)] * 1024
    status, body, sent = raw_exchange(server.url, head, chunks)  # 64 MiB offered
    assert status == 413 and "over the upload limit" in body["error"] and "--max-upload-mb" in body["error"]
    assert sent < 16 * 2**20


# ---------------------------------------------------------------- 5. mask size and regions per session

def test_huge_masks_and_too_many_regions_are_refused(client, sid, serve):
    tiny_body = {"region": {"rle": {"size": [16000, 16000], "counts": [128_000_000, 128_000_000]}}}  # valid
    for path in ("regions", "caption"):
        response = client.post(f"/api/sessions/{sid}/{path}", json=tiny_body)
        assert response.status_code == 413, response.text
        assert "16000x16000 mask (256.0 MP) is over the limit of 1.0 MP (server option --max-mask-mp)" in response.json()["error"]
    polygons = {"region": json.dumps({"polygons": [[1, 1, 5, 1, 5, 5]], "height": 5000, "width": 5000})}
    assert client.post(f"/api/sessions/{sid}/caption", json=polygons).status_code == 413

    few = serve(requests=RequestLimits(max_regions=2))
    with httpx.Client(base_url=few.url, timeout=60) as http:
        data = png_bytes(Image.new("RGB", (32, 32)))
        other = new_session(http, data)["session"]
        for _ in range(2):
            assert http.post(f"/api/sessions/{other}/regions", json={"region": POINTS}).status_code == 201
        refused = http.post(f"/api/sessions/{other}/regions", json={"region": POINTS})
        assert refused.status_code == 409 and "(server option --max-regions)" in refused.json()["error"]


# ---------------------------------------------------------------- concurrency

def test_reading_a_session_while_its_regions_are_removed_never_fails(client, sid):
    statuses = []
    for _ in range(3):
        for k in range(12):
            square = [100 + 50 * k, 100, 400 + 50 * k, 100, 400 + 50 * k, 900, 100 + 50 * k, 900]
            region = {"polygons": [square], "height": 1000, "width": 1000}  # a mask: its point text takes a while
            assert client.post(f"/api/sessions/{sid}/regions", json={"region": region}).status_code == 201
        done = threading.Event()

        def read():
            with httpx.Client(base_url=str(client.base_url), timeout=60) as other:
                while not done.is_set():
                    statuses.append(other.get(f"/api/sessions/{sid}").status_code)
                    statuses.append(other.post(f"/api/sessions/{sid}/reset", json={"keep_regions": True}).status_code)

        readers = [threading.Thread(target=read) for _ in range(2)]
        for reader in readers:
            reader.start()
        while client.get(f"/api/sessions/{sid}").json()["regions"]:
            response = client.delete(f"/api/sessions/{sid}/regions/last")
            assert response.status_code in (200, 400), response.text
        done.set()
        for reader in readers:
            reader.join()
    assert statuses and set(statuses) == {200}


# ---------------------------------------------------------------- images: EXIF, truncation

def test_uploads_are_read_upright_and_whole(client, tmp_path):
    from tests.test_image_io import noisy_file, stored_sideways
    from lavis_regionvlm.interactive import image_sha256, load_image

    phone = stored_sideways(tmp_path / "phone.jpg")
    summary = new_session(client, phone.read_bytes(), "phone.jpg")
    assert summary["image"] == {"width": 20, "height": 40, "sha256": image_sha256(load_image(phone))}

    for fmt in ("PNG", "JPEG"):
        data = noisy_file(fmt)
        response = client.post("/api/sessions", files={"image": (f"cut.{fmt}", data[: len(data) // 2], "image/png")})
        assert response.status_code == 400, response.text
        assert f"cannot read 'cut.{fmt}': it is truncated or corrupt" in response.json()["error"]
    response = client.post("/api/sessions", files={"image": ("head.jpg", noisy_file("JPEG")[:200], "image/jpeg")})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert "'head.jpg': it is truncated or corrupt" in response.json()["error"]


# ---------------------------------------------------------------- one error shape

def test_every_error_is_json_with_an_error_key(server, client, sid, generator, caplog):
    cases = [
        (client.post(f"/api/sessions/{sid}/chat", content=b'{"message": "\xff\xfe"}',
                     headers={"content-type": "application/json"}), 400, "not valid UTF-8"),
        (client.post(f"/api/sessions/{sid}/chat", content=b"[" * 20000, headers={"content-type": "application/json"}),
         400, "nested too deeply"),
        (client.post("/api/sessions", content=b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; "
                     b"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nabc",
                     headers={"content-type": "multipart/form-data; boundary=xyz"}), 422, "image: Field required"),
        (client.post("/api/sessions", content=b"--xyz\r\n\r\nabc", headers={"content-type": "multipart/form-data"}),
         400, "Missing boundary in multipart"),
        (client.get("/api/nowhere"), 404, "no such route: GET /api/nowhere"),
        (client.put(f"/api/sessions/{sid}/chat", json={}), 405, "PUT is not allowed"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert message in response.json()["error"] and "detail" not in response.json()

    generator.fail = True
    try:
        with caplog.at_level("ERROR"):
            crash = client.post(f"/api/sessions/{sid}/segment", json={"expression": "the disc"})
    finally:
        generator.fail = False
    assert crash.status_code == 500 and crash.json() == {"error": INTERNAL_ERROR}
    assert "Traceback" not in crash.text and "a bug deep inside" not in crash.text
    assert "a bug deep inside segmentation" in caplog.text and "Traceback" in caplog.text


# ---------------------------------------------------------------- body time, busy, Host, connections

def test_a_body_that_does_not_arrive_in_time_gets_408(server, sid):
    head = (f"POST /api/sessions/{sid}/chat HTTP/1.1\r\nHost: {host_of(server.url)}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mess").encode()
    began = time.monotonic()
    status, body, _ = raw_exchange(server.url, head)
    assert status == 408 and "--body-timeout" in body["error"] and time.monotonic() - began < 20


def test_more_requests_at_once_than_the_limit_get_503(serve):
    busy = serve(requests=RequestLimits(max_active_requests=1, body_timeout_s=30))
    address = urlparse(busy.url)
    slow = socket.create_connection((address.hostname, address.port))
    try:  # one request whose body is still arriving: it is active
        slow.sendall(f"POST /api/info HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Length: 10\r\n\r\n{{".encode())
        time.sleep(0.5)
        response = httpx.get(busy.url + "/api/info", timeout=30)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "(server option --max-active-requests)" in response.json()["error"]
    finally:
        slow.close()
    time.sleep(0.5)
    assert httpx.get(busy.url + "/api/info", timeout=30).status_code == 200


def test_only_this_machines_names_are_accepted_in_the_host_header(server):
    port = urlparse(server.url).port
    for host, status in (("evil.example", 400), (f"evil.example:{port}", 400), (f"localhost:{port}", 200),
                         (f"127.0.0.1:{port}", 200), ("localhost:8080", 200), (f"[::1]:{port}", 200)):
        response = httpx.get(server.url + "/api/info", headers={"host": host}, timeout=30)
        assert response.status_code == status, (host, response.text)
    refused = httpx.get(server.url + "/api/info", headers={"host": "evil.example"}, timeout=30).json()
    assert "is not this server's name" in refused["error"] and "--allowed-hosts" in refused["error"]


def test_idle_and_slow_connections_are_closed(serve):
    limited = serve(server_limits=ServerLimits(max_connections=8, header_timeout_s=1.0, keep_alive_s=1.0))
    address = urlparse(limited.url)
    idle = [socket.create_connection((address.hostname, address.port), timeout=10) for _ in range(30)]
    try:
        idle[0].sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a head, never finished
        began = time.monotonic()
        for sock in idle:  # every one is closed by the server: at once (over the cap) or at the timeout
            assert sock.recv(1) == b""
        assert time.monotonic() - began < 8
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(limited.url + "/api/info", timeout=30).status_code == 200


# ---------------------------------------------------------------- options

def test_every_limit_is_a_demo_option():
    import argparse

    from lavis_regionvlm.demo.guard import LOCAL_HOSTS
    from lavis_regionvlm.demo.server import add_demo_arguments, check_demo_options, demo_config, server_limits

    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    args = parser.parse_args(["--max-body-mb", "2", "--max-text-tokens", "64", "--max-score-texts", "8",
                              "--max-mask-mp", "1.5", "--max-regions", "4", "--max-work-side", "512",
                              "--max-active-requests", "3", "--body-timeout", "7", "--max-connections", "50",
                              "--header-timeout", "4", "--keep-alive-timeout", "2", "--allowed-hosts", "demo.lan"])
    config = demo_config(args)
    assert config.requests == RequestLimits(max_body_bytes=2 * 2**20, max_text_tokens=64, max_score_texts=8,
                                            max_mask_pixels=1_500_000, max_regions=4, max_work_side=512,
                                            max_active_requests=3, body_timeout_s=7.0)
    assert server_limits(args) == ServerLimits(max_connections=50, header_timeout_s=4.0, keep_alive_s=2.0)
    assert config.allowed_hosts == LOCAL_HOSTS + ("demo.lan",)
    defaults = demo_config(parser.parse_args([]))
    assert defaults.requests == RequestLimits() and defaults.allowed_hosts == LOCAL_HOSTS
    assert demo_config(parser.parse_args(["--host", "0.0.0.0"])).allowed_hosts is None
    assert demo_config(parser.parse_args(["--allowed-hosts", "*"])).allowed_hosts is None
    with pytest.raises(ValueError, match="--max-text-tokens must be positive"):
        check_demo_options(parser.parse_args(["--max-text-tokens", "0"]))


def test_connections_have_nagle_off(server):
    """Each keep-alive answer waited ~40 ms before (Nagle's algorithm meeting the client's delayed
    ACK: the listening socket did not say TCP, so asyncio never set TCP_NODELAY)."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/api/info").status_code == 200  # the connection stays open (keep-alive)
        connections = list(server.server.server_state.connections)
        assert connections
        for connection in connections:
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
