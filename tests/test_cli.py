"""The `regionvlm` command line: every subcommand in text and --json mode, the chat loop on
piped input, and clear errors with exit code 2. One subprocess run checks
`python -m lavis_regionvlm.cli`; the rest call `main(argv)` in-process (the model loads once)."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.cli import main
from lavis_regionvlm.interactive import Chat, RegionPredictor
from lavis_regionvlm.regions.masks import decode_rle, mask_to_rle

FAST = ["--num-beams", "2", "--max-new-tokens", "3"]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory, random_image):
    path = tmp_path_factory.mktemp("cli") / "img.png"
    Image.fromarray(random_image(seed=0)).save(path)
    return path


@pytest.fixture(scope="module")
def predictor(image_path):
    p = RegionPredictor.from_pretrained("tiny")
    p.set_image(image_path)
    return p


def run(*argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def base(command, image_path, *extra):
    return (command, "--image", image_path, "--model-type", "tiny", "--device", "cpu", *extra)


def test_module_entry_point_in_a_subprocess(image_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lavis_regionvlm.cli", *base("caption", str(image_path), "--points", "[32 64] [37 62]",
                                                               "--region", '{"box": [0.1, 0.1, 0.5]}', *FAST)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "regionvlm caption: error: --region #2: " in done.stderr and "box must be 4 numbers" in done.stderr
    assert done.stdout == ""


def test_caption_text_and_json(image_path, predictor):
    code, out, err = run(*base("caption", image_path, "--points", "[32 64] [37 62]", *FAST))
    assert code == 0, err
    expected = predictor.caption("[32 64] [37 62]", num_beams=2, max_new_tokens=3)
    assert out == expected + "\n"
    code, out, err = run(*base("caption", image_path, "--points", "[32 64] [37 62]",
                               "--region", '{"box": [0.1, 0.1, 0.5, 0.6]}', "--json", *FAST))
    assert code == 0, err
    result = json.loads(out)
    assert result["image_sha256"] == predictor.image_sha256
    assert result["settings"] == {"model_type": "tiny", "seed": 0, "num_points": 10, "quantize": "floor"}
    assert [r["region"] for r in result["results"]] == [{"point_text": "[32 64] [37 62]"},
                                                        {"box": [0.1, 0.1, 0.5, 0.6]}]
    assert result["results"][0]["caption"] == expected
    assert result["results"][0]["point_text"] == predictor.region_text("[32 64] [37 62]")


def test_points_are_read_as_given_and_an_empty_one_is_the_whole_image(image_path, predictor):
    code, out, err = run(*base("caption", image_path, "--points", "[29 57] [58 14]", "--points", "", "--json", *FAST))
    assert code == 0, err
    results = json.loads(out)["results"]
    # not redrawn as "[28 56] [28 56] ..." (0.29 * 100 = 28.999..., floored, repeated to K)
    assert [r["point_text"] for r in results] == ["[29 57] [58 14]", ""]
    assert [r["region"] for r in results] == [{"point_text": "[29 57] [58 14]"}, {"point_text": ""}]
    assert [r["caption"] for r in results] == predictor.caption(["[29 57] [58 14]", None], num_beams=2,
                                                                max_new_tokens=3)
    code, out, err = run(*base("caption", image_path, "--points", '{"box": [0.1, 0.1, 0.5, 0.6]}'))
    assert code == 2 and "--points #1: --points takes point text" in err and "use --region" in err


def test_segment_scores_the_expression_as_the_ris_evaluation_on_every_path(image_path, predictor, tmp_path):
    from lavis_regionvlm.ris.expression import ris_expression
    from lavis_regionvlm.ris.segment import main as segment_main

    assert ris_expression("The dog.") == "the dog"  # blip_caption: lowercased, '.' gone (eval_RIS.py)
    masks = [np.zeros((48, 80), bool) for _ in range(3)]
    masks[0][5:30, 5:40] = True
    masks[1][10:45, 40:75] = True
    masks[2][2:20, 30:70] = True
    records = [{"segmentation": mask_to_rle(m)} for m in masks]
    proposals = tmp_path / "proposals.json"
    proposals.write_text(json.dumps(records))
    code, out, err = run(*base("segment", image_path, "--expression", "The dog.", "--proposals", proposals, "--json"))
    assert code == 0, err
    command = json.loads(out)["scores"]
    module = segment_main(["--image", str(image_path), "--expression", "The dog.", "--proposals", str(proposals),
                           "--out", str(tmp_path / "module"), "--model-type", "tiny", "--device", "cpu"]).scores
    direct = predictor.segment("The dog.", records).scores
    evaluated = predictor.segment("the dog", records).scores
    assert command == module == direct == evaluated
    code, out, err = run(*base("segment", image_path, "--expression", " .. ", "--proposals", proposals))
    assert code == 2 and "--expression: the expression ' .. ' has no words" in err


def test_region_from_a_json_file_and_whole_image_ask(image_path, predictor, tmp_path):
    region_file = tmp_path / "region.json"
    region_file.write_text(json.dumps({"scribble": [[0.1, 0.1], [0.6, 0.5]]}))
    code, out, err = run(*base("ask", image_path, "--region", region_file, "--question", "what is it?", *FAST))
    assert code == 0, err
    assert out.strip() == predictor.ask("what is it?", {"scribble": [[0.1, 0.1], [0.6, 0.5]]},
                                        num_beams=2, max_new_tokens=3)
    code, out, err = run(*base("ask", image_path, "--question", "what is it?", "--json", *FAST))
    result = json.loads(out)
    assert code == 0 and result["question"] == "what is it?"
    assert result["results"] == [{"region": None, "point_text": "", "answer": predictor.ask("what is it?", **dict(
        num_beams=2, max_new_tokens=3))}]


def test_score_text_and_json(image_path, predictor):
    code, out, err = run(*base("score", image_path, "--points", "[32 64]", "--text", "a dog", "--text", "a cat"))
    assert code == 0, err
    losses = predictor.score(["a dog", "a cat"], "[32 64]")
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [t for _, t in lines] == ["a dog", "a cat"]
    assert np.allclose([float(v) for v, _ in lines], losses.numpy(), atol=1e-4)
    code, out, err = run(*base("score", image_path, "--points", "[32 64]", "--text", "a dog", "--text", "a cat",
                               "--json"))
    result = json.loads(out)["results"][0]
    assert torch.allclose(torch.tensor([s["loss"] for s in result["scores"]]), losses)
    assert result["best"] == ["a dog", "a cat"][int(losses.argmin())]


def test_segment_with_a_proposal_file(image_path, tmp_path):
    masks = [np.zeros((48, 80), bool) for _ in range(2)]
    masks[0][5:30, 5:40] = True
    masks[1][10:45, 40:75] = True
    proposals = tmp_path / "proposals.json"
    proposals.write_text(json.dumps([{"segmentation": mask_to_rle(m)} for m in masks]))
    code, out, err = run(*base("segment", image_path, "--expression", "the right one", "--proposals", proposals,
                               "--out", tmp_path / "out", "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert result["proposal"] in (0, 1) and np.array_equal(decode_rle(result["rle"]), masks[result["proposal"]])
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"mask.png", "mask_rle.json", "overlay.png"}
    code, out, err = run(*base("segment", image_path, "--expression", "the right one", "--proposals", proposals))
    assert code == 0 and out.startswith(f"proposal {result['proposal']} (loss ")
    code, out, err = run(*base("segment", image_path, "--expression", "x", "--proposals", tmp_path / "none.json"))
    assert code == 2 and "--proposals: no such file" in err


def test_chat_on_piped_input_exports_a_replayable_session(image_path, predictor, tmp_path):
    session = tmp_path / "session.json"
    lines = [
        "/points [32 64] [37 62]",
        '/region {"box": [0.1, 0.1, 0.5, 0.5]}',
        "what is [0]?",
        "is [1] near [0]?",
        "what is [7]?",          # rejected: no such region
        '/region {"box": [1, 2]}',  # rejected: bad region
        "/regions",
        f"/export {session}",
        "/quit",
        "never read",
    ]
    code, out, err = run(*base("chat", image_path, *FAST), stdin="\n".join(lines) + "\n")
    assert code == 1  # some lines were rejected; the chat went on
    answers = out.splitlines()
    assert len(answers) == 2
    assert "region [0] added" in err and "refer to it as [1]" in err
    assert "error on input line 5: the message refers to [7]" in err
    assert "error on input line 6: /region: box must be 4 numbers" in err
    saved = json.loads(session.read_text())
    assert [t["answer"] for t in saved["turns"]] == answers
    assert Chat.replay(saved, predictor) == answers

    code, out, err = run(*base("chat", image_path, "--json", "--replay", session, "--export", tmp_path / "again.json"),
                         stdin="/reset turns\nwhat is [1]?\n")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["replayed", "replayed", "reset", "answer", "export"]
    assert [e["answer"] for e in events[:2]] == answers
    again = json.loads((tmp_path / "again.json").read_text())
    assert len(again["turns"]) == 1 and again["regions"] == saved["regions"]


def test_chat_history_cut_is_reported(image_path):
    stdin = "/points [32 64] [37 62]\nwhat is [0]?\nwhat colour is [0]?\nhow big is [0]?\n"
    code, out, err = run(*base("chat", image_path, "--max-input-tokens", "40", "--json", *FAST), stdin=stdin)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    notices = [e for e in events if e["event"] == "notice"]
    assert notices and "history cut" in notices[0]["message"]
    assert any(e["event"] == "answer" and e["dropped_turns"] > 0 for e in events)


@pytest.mark.parametrize("argv, message", [
    (("--region", '{"points": [[0.3, 0.6]'), "--region #1: invalid JSON at line 1 column 23"),
    (("--region", '{"pts": [[0.3, 0.6]]}'), "--region #1: region JSON must have exactly one of the keys"),
    (("--region", "missing.json"), "--region #1: expected a JSON object or a path to a JSON file"),
    (("--points", "[32 64] [37"), "--points #1: "),
    (("--points", "[10 10]", "--points", "[500 10]"), "--points #2: point '[500 10]'"),
])
def test_bad_regions_exit_2_with_a_clear_message(image_path, argv, message):
    code, out, err = run(*base("caption", image_path, *argv))
    assert code == 2 and out == ""
    assert err.startswith("regionvlm caption: error: ") and message in err


def test_bad_images_and_arguments_exit_2(image_path, tmp_path):
    code, _, err = run("caption", "--image", tmp_path / "nope.png", "--model-type", "tiny")
    assert code == 2 and f"--image: no such file: {tmp_path / 'nope.png'}" in err
    (tmp_path / "text.png").write_text("hello")
    code, _, err = run("ask", "--image", tmp_path / "text.png", "--model-type", "tiny", "--question", "q")
    assert code == 2 and "--image: cannot read" in err
    code, _, err = run("ask", "--image", image_path, "--model-type", "tiny")
    assert code == 2 and "--question" in err
    code, _, err = run("caption", "--image", image_path, "--model-type", "nope")
    assert code == 2 and "cannot load model type 'nope'" in err
    code, _, err = run(*base("caption", image_path, "--num-points", "0"))
    assert code == 2 and "num_points must be >= 1" in err
    code, _, err = run()
    assert code == 2
