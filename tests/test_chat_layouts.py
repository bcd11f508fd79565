"""Which chat layout each entry point uses: the CLI chat and the web demo both default to the
released layout, take the history layout by name, record it in exported sessions, and answer
as an in-process `Chat` with the same layout does."""
import io
import json

import httpx
import pytest
from PIL import Image

from lavis_regionvlm.cli import main
from lavis_regionvlm.demo import DemoConfig, create_app
from lavis_regionvlm.interactive import Chat, RegionPredictor

FAST = ["--num-beams", "2", "--max-new-tokens", "3"]
QUESTIONS = ("what is [0]?", "what colour is it?", "and is [0] big?")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory, random_image):
    path = tmp_path_factory.mktemp("layouts") / "img.png"
    Image.fromarray(random_image(seed=3)).save(path)
    return path


@pytest.fixture(scope="module")
def predictor(image_path):
    p = RegionPredictor.from_pretrained("tiny")
    p.set_image(image_path)
    return p


def _local_answers(predictor, layout, **generate_kwargs):
    chat = Chat(predictor, layout=layout, generate_kwargs=generate_kwargs)
    chat.add_region("[32 64] [37 62]")
    return [chat.ask(question).answer for question in QUESTIONS]


@pytest.mark.parametrize("flags, layout", [((), "released"), (("--layout", "history"), "history")])
def test_cli_chat_layout(image_path, predictor, tmp_path, flags, layout):
    session = tmp_path / "session.json"
    out, err = io.StringIO(), io.StringIO()
    argv = ["chat", "--image", str(image_path), "--model-type", "tiny", "--device", "cpu", "--points", "[32 64] [37 62]",
            *flags, *FAST, "--export", str(session)]
    code = main(argv, stdin=io.StringIO("\n".join(QUESTIONS) + "\n"), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    saved = json.loads(session.read_text())
    assert saved["settings"]["layout"] == layout
    assert out.getvalue().splitlines() == _local_answers(predictor, layout, num_beams=2, max_new_tokens=3)


def test_cli_chat_refuses_an_unknown_layout(image_path):
    err = io.StringIO()
    code = main(["chat", "--image", str(image_path), "--model-type", "tiny", "--layout", "theirs"],
                stdin=io.StringIO(""), stdout=io.StringIO(), stderr=err)
    assert code == 2 and "--layout: invalid choice: 'theirs' (choose from 'released', 'history')" in err.getvalue()


@pytest.mark.parametrize("config, layout", [({}, "released"), ({"chat_layout": "history"}, "history")])
def test_demo_chat_layout(demo_server, image_path, config, layout):
    server = demo_server(**config)
    with httpx.Client(base_url=server.url, timeout=120) as client:
        created = client.post("/api/sessions", files={"image": ("img.png", image_path.read_bytes(), "image/png")})
        sid = created.json()["session"]
        client.post(f"/api/sessions/{sid}/regions", json={"region": "[32 64] [37 62]"})
        answers = [client.post(f"/api/sessions/{sid}/chat", json={"message": q}).json()["answer"] for q in QUESTIONS]
        exported = client.get(f"/api/sessions/{sid}/export").json()
    assert exported["settings"]["layout"] == layout
    local = RegionPredictor(server.predictor.model, server.predictor.vis_processor)
    local.set_image(image_path)
    assert answers == _local_answers(local, layout)


def test_demo_refuses_an_unknown_layout(predictor):
    with pytest.raises(ValueError, match="unknown chat layout 'theirs'"):
        create_app(predictor, DemoConfig(chat_layout="theirs"))


@pytest.mark.parametrize("flags, layout", [((), "released"), (("--chat-layout", "history"), "history")])
def test_regionvlm_demo_chat_layout_option(flags, layout):
    import argparse

    from lavis_regionvlm.demo.server import add_demo_arguments, demo_config

    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    assert demo_config(parser.parse_args(list(flags))).chat_layout == layout
