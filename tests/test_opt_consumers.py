"""The consumer matrix on `blip2_opt_region`: the model-agnostic tests of the predictor, the
chat, VCR, RIS, the demo API and the one scoring path, re-run on the tiny OPT model, plus the
CLI's `--model`.

Each test function imported below is collected again in this module and runs with THIS
module's fixtures (`predictor`, `tiny_model`, `server`, `client`: the tiny OPT model), so the
same assertions hold for both models without copies; the data fixtures come with them."""
import importlib.util
from pathlib import Path

import pytest
import torch

from lavis_regionvlm.interactive import RegionPredictor

REUSED = {  # test module -> the tests (and the data fixtures they need) re-run here on the OPT model
    "test_predictor": [
        "test_every_region_form_is_accepted_and_equal_forms_give_equal_text",
        "test_point_text_is_used_as_given_and_the_whole_image_works_in_a_list",
        "test_points_are_seeded", "test_ask_about_regions_and_the_whole_image",
        "test_score_returns_losses_matching_the_models_scoring",
    ],
    "test_chat": [
        "spy", "test_history_declares_regions_when_first_used_and_feeds_answers_back",
        "test_length_budget_drops_the_oldest_turns_and_says_so", "test_reset_forgets_turns_and_optionally_regions",
        "test_a_region_given_as_point_text_is_kept_and_read_as_given",
        "test_export_and_replay_give_the_same_answers", "test_replay_uses_the_recorded_layout",
    ],
    "test_vcr_task": ["synthetic", "datasets", "test_rank_always_gives_a_valid_choice",
                      "test_test_split_gets_predictions_but_no_accuracies"],
    "test_ris_task": ["data", "test_single_process_evaluation"],
    "test_one_path": ["test_every_consumer_scores_a_pair_alike"],
    "test_demo_api": ["test_operations_match_the_predictor_and_chat_in_process",
                      "test_a_region_added_as_point_text_is_stored_and_read_as_given",
                      "test_segment_scores_the_expression_as_the_ris_evaluation"],
}


def _reuse(module_name: str, names: list[str]) -> None:
    """Put `names` of tests/<module_name>.py into this module (pytest runs in importlib mode:
    the test folder is not on sys.path)."""
    path = Path(__file__).with_name(f"{module_name}.py")
    spec = importlib.util.spec_from_file_location(f"_opt_reuse_{module_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in names:
        globals()[name] = getattr(module, name)


for _module, _names in REUSED.items():
    _reuse(_module, _names)

MODEL = "blip2_opt_region"


@pytest.fixture(scope="module")
def predictor(random_image):
    p = RegionPredictor.from_pretrained("tiny", device="cpu", name=MODEL)
    p.set_image(random_image())
    return p


@pytest.fixture(scope="module")
def tiny_model(predictor):
    return predictor.model


@pytest.fixture(scope="module")
def server(demo_server):
    from lavis_regionvlm.demo.server import mask_generator

    return demo_server(model=MODEL, mask_generator=mask_generator("tiny"))


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def test_the_matrix_runs_on_opt(predictor, server):
    assert type(predictor.model).__name__ == "Blip2OPTRegion"
    assert type(server.predictor.model).__name__ == "Blip2OPTRegion"


def test_predictor_caption_is_the_models_generate(predictor):
    """The predictor's caption is `model.generate` (LAVIS's API) on the same region, stripped."""
    fast = {"num_beams": 2, "max_new_tokens": 4}
    region = "[32 64] [37 62]"
    image = predictor.vis_processor(predictor.image)[None]
    ours = predictor.caption(region, **fast)
    theirs = predictor.model.generate({"image": image, "region_text": [region]}, num_beams=2, max_length=4)
    assert ours == theirs[0].strip()


def test_cli_model_option_loads_opt(tmp_path, random_image, predictor):
    import io
    import json

    from PIL import Image

    from lavis_regionvlm.cli import main

    path = tmp_path / "img.png"
    Image.fromarray(random_image()).save(path)

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = main([str(a) for a in argv], stdin=io.StringIO(""), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    common = ("--image", path, "--model", MODEL, "--model-type", "tiny", "--device", "cpu")
    code, out, err = run("caption", *common, "--points", "[32 64] [37 62]", "--num-beams", "2",
                         "--max-new-tokens", "3", "--json")
    assert code == 0, err
    expected = predictor.caption("[32 64] [37 62]", num_beams=2, max_new_tokens=3)
    assert json.loads(out)["results"][0]["caption"] == expected
    code, out, err = run("score", *common, "--points", "[32 64] [37 62]", "--text", "a dog", "--text", "red", "--json")
    assert code == 0, err
    losses = [row["loss"] for row in json.loads(out)["results"][0]["scores"]]
    torch.testing.assert_close(torch.tensor(losses), predictor.score(["a dog", "red"], "[32 64] [37 62]"),
                               atol=1e-4, rtol=1e-4)
    code, _, err = run("caption", "--image", path, "--model", "nope", "--device", "cpu")
    assert code == 2 and "--model nope: give its --model-type" in err
    code, _, err = run("caption", "--image", path, "--model", "nope", "--model-type", "tiny", "--device", "cpu")
    assert code == 2 and "no model named 'nope'" in err
