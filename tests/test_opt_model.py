"""`blip2_opt_region`: the OPT language model behind `RegionLM` (layout, loss on the target only,
cached scoring equal to full passes, cached generation equal to a plain greedy loop), parity
with LAVIS's stock `blip2_opt`, registration and errors."""
import pytest
import torch
import torch.nn.functional as F
from lavis.models.blip2_models.blip2_opt import Blip2OPT
from omegaconf import OmegaConf
from torch import nn

from lavis_regionvlm.models import Blip2OPTRegion
from lavis_regionvlm.models.lm.opt import OPTLM, opt_numerics

POINTS_A = "[10 10] [12 14] [15 11]"
POINTS_B = "[80 85] [90 88] [85 95]"


@pytest.fixture(scope="module")
def opt_config():
    return OmegaConf.load(Blip2OPTRegion.default_config_path("tiny"))


def build(opt_config, **overrides) -> Blip2OPTRegion:
    return Blip2OPTRegion.from_config(OmegaConf.merge(opt_config.model, overrides))


@pytest.fixture(scope="module")
def opt_model(opt_config):
    return build(opt_config).eval()


@pytest.fixture(scope="module")
def lm(opt_model) -> OPTLM:
    return opt_model.lm


def soft(seed: int, rows: int, width: int = 128) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def naive_nll(lm: OPTLM, pieces, candidate: str) -> tuple[float, int]:
    """Summed NLL and token count of `candidate` after `pieces`: one unpadded full pass."""
    (prefix,), _ = lm._rows([pieces], None)
    target = lm.text_tokens(candidate + "\n")[: lm.max_target_tokens]
    ids = torch.tensor(target)
    inputs = torch.cat([prefix, lm.model.get_input_embeddings()(ids)])[None]
    with torch.no_grad():
        logits = lm.model(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long)).logits
    start = prefix.shape[0] - 1
    nll = F.cross_entropy(logits[0, start : start + len(target)].float(), ids, reduction="sum")
    return float(nll), len(target)


def stock_blip2_opt_sharing(model: Blip2OPTRegion, prompt: str = "") -> Blip2OPT:
    """A stock LAVIS `Blip2OPT` on the very modules of `model` (its constructor downloads
    bert-base-uncased, EVA ViT-g and OPT, so it is made without it); LAVIS's own forward and
    generate run."""
    stock = Blip2OPT.__new__(Blip2OPT)
    nn.Module.__init__(stock)
    for name in ("visual_encoder", "ln_vision", "Qformer", "query_tokens", "opt_model", "opt_proj"):
        setattr(stock, name, getattr(model, name))
    stock.tokenizer, stock.opt_tokenizer = model.tokenizer, model.opt_tokenizer
    stock.prompt, stock.max_txt_len = prompt, model.max_txt_len
    stock.prompt_length = model.opt_tokenizer(prompt, return_tensors="pt").attention_mask.sum(1)
    stock.eos_token_id = model.opt_tokenizer("\n", add_special_tokens=False).input_ids[0]
    return stock.eval()


def test_registered_loadable_through_lavis_and_listed_in_model_zoo():
    from lavis.common.registry import registry
    from lavis.models import load_model_and_preprocess, model_zoo

    assert registry.get_model_class("blip2_opt_region") is Blip2OPTRegion
    assert model_zoo.model_zoo["blip2_opt_region"] == ["tiny", "pretrain_opt2.7b", "pretrain_opt6.7b"]
    model, vis, txt = load_model_and_preprocess("blip2_opt_region", "tiny", is_eval=True)
    assert type(model) is Blip2OPTRegion and not model.training
    assert (model.opt_tokenizer.bos_token, model.opt_tokenizer.pad_token_id) == ("</s>", 1)


def test_layout_puts_bos_after_the_leading_soft_prompts(lm):
    """[Z, text] -> [Z; </s>; text] (LAVIS's blip2_opt), and the BOS opens the first text."""
    bos = lm.tokenizer.bos_token_id
    red = lm.text_tokens("a red circle")
    assert red == [68, 342, 326]  # the tiny BPE: "a", "Ġred", "Ġcircle"
    z = soft(0, 3)
    layout = lm._layout([z, "a red circle"], None)
    assert layout[0] is z and layout[1:] == [[bos], red]
    layout = lm._layout(["a red circle", z, "a"], None)
    assert layout[0] == [bos] and layout[1] == red and layout[2] is z and layout[3] == [68]
    assert lm._layout([z], None)[1:] == [[bos]]
    assert lm.count_tokens([z, "a red circle"]) == 3 + 1 + 3
    # the one truncation rule counts the BOS: 5 text tokens = BOS + 4
    cut = lm._layout([z, "a red circle", z, "a red circle"], 5)
    assert cut[1:] == [[bos], red, cut[3], red[:1]]
    # the target is the text and "\n" (one token: "Ċ"), tokenized alone
    assert lm._targets(["a red circle"]) == [red + [lm.end_token_id]]
    assert lm.tokenizer.convert_ids_to_tokens([lm.end_token_id]) == ["Ċ"]


def test_forward_loss_equals_stock_blip2_opt(opt_config, images):
    """Global query-only rows are LAVIS's blip2_opt training pass, bit for bit, when LAVIS masks
    its prompt: LAVIS tokenizes prompt + text as one string and masks the BOS and prompt
    (`prompt_length`); a prompt ending in "?" before a word tokenizes the same in one string
    or in two pieces."""
    model = build(opt_config, global_region_mode="query_only").eval()
    stock = stock_blip2_opt_sharing(model, prompt="what colour?")
    texts = ["a red disc at the top", "blue"]
    ours = model({"image": images, "region_text": ["", ""], "text_input": ["what colour?"] * 2, "text_output": texts})
    theirs = stock({"image": images, "text_input": ["what colour?" + t for t in texts]})
    assert torch.equal(ours["loss"], theirs["loss"])


def test_empty_prompt_masks_the_bos_which_stock_blip2_opt_counts(opt_config, images):
    """Deviation: LAVIS masks `prompt_length` tokens only when its prompt is non-empty, so with
    no prompt its loss also counts predicting the BOS `</s>` after the soft prompt (a constant,
    not text). Ours never counts the BOS: adding that one token's NLL recovers LAVIS's loss."""
    model = build(opt_config, global_region_mode="query_only").eval()
    stock = stock_blip2_opt_sharing(model)
    texts = ["a red disc at the top", "blue"]
    ours = model({"image": images, "region_text": ["", ""], "text_input": ["", ""], "text_output": texts})["loss"]
    theirs = stock({"image": images, "text_input": texts})["loss"]
    lm = model.lm
    z = model.encode_regions(model.encode_image(images), ["", ""])
    with torch.no_grad():  # the soft prompt's last position predicts the BOS
        logits = lm.model(inputs_embeds=z).logits[:, -1]
    bos_nll = -F.log_softmax(logits, dim=-1)[:, lm.tokenizer.bos_token_id]
    counts = torch.tensor([len(lm._targets([t])[0]) for t in texts])
    expected = (ours.detach() * counts.sum() + bos_nll.sum()) / (counts.sum() + 2)
    assert float(theirs.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(theirs.detach()) - float(ours.detach())) > 1e-3


def test_generate_equals_stock_blip2_opt(opt_config, images):
    """Beam search and greedy decoding as LAVIS's generate (which re-runs the whole sequence
    each step under transformers 4.26; ours continues from the cache)."""
    model = build(opt_config, global_region_mode="query_only").eval()
    stock = stock_blip2_opt_sharing(model)
    for gen in (dict(num_beams=3, max_length=8, min_length=1), dict(num_beams=1, max_length=6, min_length=3)):
        ours = model.generate({"image": images, "region_text": ["", ""]}, **gen)
        assert ours == stock.generate({"image": images}, **gen)  # stripped, as LAVIS returns it


def test_loss_counts_the_target_tokens_only(lm):
    """The loss is the mean NLL of the target tokens ("\\n" included) from a plain forward;
    including the BOS or prompt tokens would change it."""
    z = soft(1, 4)
    pieces = [[z, "what colour is it?"], [soft(2, 4), ""]]
    targets = ["a red circle", "blue"]
    loss = float(lm.loss(pieces, targets))
    sums, counts = zip(*(naive_nll(lm, p, t) for p, t in zip(pieces, targets)))
    assert loss == pytest.approx(sum(sums) / sum(counts), rel=1e-5)
    # what the loss would be with the prompt's tokens (after the BOS) also counted
    (prefix,), _ = lm._rows([pieces[0]], None)
    prompt = lm.text_tokens("what colour is it?")
    with torch.no_grad():
        logits = lm.model(inputs_embeds=prefix[None]).logits[0]
    start = prefix.shape[0] - len(prompt) - 1
    prompt_nll = float(F.cross_entropy(logits[start : start + len(prompt)], torch.tensor(prompt), reduction="sum"))
    with_prompt = (sum(sums) + prompt_nll) / (sum(counts) + len(prompt))
    # a random model gives every token about ln(V) nats, so the two differ little, but by far
    # more than the tolerance above: the equality would fail with the prompt counted
    assert abs(loss - with_prompt) > 5 * 1e-5 * loss


def test_fast_scores_equal_full_passes(lm):
    """Prefix once + cache expanded over candidates == one unpadded pass per (input, candidate):
    inputs of different lengths (left padding), interleaved pieces, per-row lists, both
    reductions."""
    batch = [
        [soft(3, 4), "what colour is the thing at the top left?"],
        [soft(4, 4), ""],
        ["Let", soft(5, 4), "be the region. what is it?"],
    ]
    table = [["red", "a blue square at the bottom", "x"], ["a", "green", "the circle"], ["b", "c", "d e f g"]]
    for reduction in ("mean", "sum"):
        fast = lm.score(batch, table, reduction=reduction)
        for b, pieces in enumerate(batch):
            for c, text in enumerate(table[b]):
                total, count = naive_nll(lm, pieces, text)
                expected = total if reduction == "sum" else total / count
                assert float(fast[b, c]) == pytest.approx(expected, abs=1e-4), (b, c, reduction)
    # a shared list, scored in chunks of one pair, gives the same
    shared = ["red", "a blue square at the bottom"]
    one_pair_per_call = lm.with_token_budget(1)
    assert torch.allclose(lm.score(batch, shared), one_pair_per_call.score(batch, shared), atol=1e-5)


def test_left_and_right_padding_give_the_same_logits(lm):
    """OPT positions follow the attention mask, so padding side changes nothing."""
    batch = [[soft(6, 4), "a red circle at the top"], [soft(7, 4), ""]]
    outputs = {}
    for side in ("left", "right"):
        embeds, mask = lm.embed(batch, padding_side=side)
        with torch.no_grad():
            logits = lm.model(inputs_embeds=embeds, attention_mask=mask).logits
        outputs[side] = [logits[i][mask[i].bool()] for i in range(2)]
    for left, right in zip(outputs["left"], outputs["right"]):
        assert torch.allclose(left, right, atol=1e-5)


def test_cached_greedy_generation_equals_a_plain_loop(lm):
    """Generation from the cache == argmax over full passes, token by token, stopping at "\\n"."""
    batch = [[soft(8, 4), "what is it?"], ["Let", soft(9, 4), "be it"]]
    generated = lm.generate(batch, num_beams=1, max_new_tokens=7, do_sample=False)
    for pieces, text in zip(batch, generated):
        (prefix,), _ = lm._rows([pieces], None)
        inputs, tokens = prefix, []
        with torch.no_grad():
            for _ in range(7):
                next_id = int(lm.model(inputs_embeds=inputs[None]).logits[0, -1].argmax())
                if next_id == lm.end_token_id:
                    break
                tokens.append(next_id)
                inputs = torch.cat([inputs, lm.model.get_input_embeddings()(torch.tensor([next_id]))])
        assert text == lm.tokenizer.decode(tokens, skip_special_tokens=True)


def test_generation_options(opt_model, images):
    samples = {"image": images, "region_text": [POINTS_A, ""]}
    beams = opt_model.generate(samples, num_beams=3, max_length=5, num_captions=2)
    assert len(beams) == 4 and all(isinstance(t, str) for t in beams)
    torch.manual_seed(0)
    sampled = opt_model.generate(samples, use_nucleus_sampling=True, max_length=5, num_captions=3, top_p=0.9)
    assert len(sampled) == 6
    lengths = opt_model.lm.generate([[soft(10, 4), ""]], num_beams=1, max_new_tokens=4, min_new_tokens=4)
    assert len(opt_model.opt_tokenizer(lengths[0], add_special_tokens=False).input_ids) >= 3


def test_model_score_equals_the_forward_loss_of_one_pair(opt_model, images):
    texts = ["a red disc", "a blue square at the bottom right of the picture"]
    batch = opt_model.score({"image": images, "region_text": [POINTS_A, POINTS_B], "text_output": texts})
    for i in range(2):
        single = {"image": images[i : i + 1], "region_text": [[POINTS_A, POINTS_B][i]],
                  "text_output": [texts[i]], "text_input": [""]}
        with torch.no_grad():
            loss = float(opt_model(single)["loss"])
        assert loss == pytest.approx(float(batch[i]), rel=1e-5)
    (ranked,) = opt_model.predict_answers(
        {"image": images[:1], "text_input": ["what?"], "region_text": [POINTS_A]},
        inference_method="rank", answer_list=texts + ["red"],
    )
    z = opt_model.encode_regions(opt_model.encode_image(images[:1]), [POINTS_A])[0]
    scores = opt_model.lm.score([[z, "what?"]], texts + ["red"])
    assert ranked == (texts + ["red"])[int(scores.argmin())]


def test_gradients_reach_the_projection_never_opt(opt_config, images):
    model = build(opt_config).train()
    loss = model({"image": images, "region_text": [POINTS_A, POINTS_B], "text_input": ["", "what?"],
                  "text_output": ["a red disc", "blue"]})["loss"]
    loss.backward()
    assert model.opt_proj.weight.grad.abs().sum() > 0
    assert model.query_tokens.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.opt_model.parameters())


def test_tiny_opt_is_reproducible_and_small(opt_config, opt_model):
    again = build(opt_config)
    for (name, a), (_, b) in zip(opt_model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert sum(p.numel() * p.element_size() for p in again.parameters()) / 2**20 < 16


def test_bad_opt_settings_give_clear_errors(opt_config):
    with pytest.raises(ValueError, match="opt_precision must be one of"):
        build(opt_config, opt_precision="int8")
    with pytest.raises(ValueError, match="opt_init must be"):
        build(opt_config, opt_init="zeros")
    with pytest.raises(RuntimeError, match="set opt_precision: fp32"):
        opt_numerics("cpu", torch.float16)
    assert opt_numerics("cpu", torch.float16, cpu_autocast=True).autocast_dtype == torch.bfloat16
    assert opt_numerics("cuda", torch.float16).autocast_dtype == torch.float16
    assert opt_numerics("cuda", torch.float32).autocast_dtype is None


@pytest.fixture(scope="module")
def opt_released_files(tmp_path_factory, opt_config):
    """Files laid out like LAVIS's for BLIP-2 OPT: eva_vit_g.pth, an OPT hub folder whose
    weights are saved without the `model.` prefix (as facebook/opt-* hold `decoder.*`), the
    stage-2 OPT checkpoint (no Q-Former text branch, no OPT) and the stage-1 checkpoint."""
    from lavis_regionvlm.models.region_core import is_text_branch_key

    root = tmp_path_factory.mktemp("lavis_opt_files")
    source = build(opt_config, init_seed=7)
    state = source.state_dict()
    torch.save(source.visual_encoder.state_dict(), root / "eva_vit_g.pth")
    source.opt_model.config.save_pretrained(root / "opt")
    source.opt_tokenizer.save_pretrained(root / "opt")
    torch.save({k: v for k, v in source.opt_model.model.state_dict().items()}, root / "opt" / "pytorch_model.bin")
    stage2 = {k: v for k, v in state.items() if not k.startswith("opt_model.") and not is_text_branch_key(k)}
    torch.save({"model": stage2}, root / "blip2_pretrained_opt.pth")
    stage1 = {k: (v if is_text_branch_key(k) else v + 1.0) for k, v in state.items() if k.startswith("Qformer.")}
    stage1["vision_proj.weight"] = torch.zeros(4, 4)
    torch.save({"model": stage1}, root / "blip2_pretrained.pth")
    return source, root


@pytest.mark.parametrize("lean_load", [False, True])
def test_pretrain_type_loads_every_weight_from_lavis_layout_files(opt_released_files, opt_config, lean_load):
    from lavis_regionvlm.models.region_core import is_text_branch_key

    source, root = opt_released_files
    cfg = OmegaConf.load(Blip2OPTRegion.default_config_path("pretrain_opt2.7b")).model
    assert (cfg.image_size, cfg.opt_model, cfg.opt_precision) == (224, "facebook/opt-2.7b", "fp16")
    assert cfg.pretrained.endswith("blip2_pretrained_opt2.7b.pth")
    assert cfg.text_branch_pretrained.endswith("blip2_pretrained.pth")
    model = build(opt_config, init_seed=123, vit_weights=str(root / "eva_vit_g.pth"), opt_model=str(root / "opt"),
                  opt_init="pretrained", load_pretrained=True, pretrained=str(root / "blip2_pretrained_opt.pth"),
                  text_branch_pretrained=str(root / "blip2_pretrained.pth"), lean_load=lean_load)
    expected = source.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    report = model.load_report
    assert sorted(report.sources["stage-1 text branch"]) == sorted(k for k in expected if is_text_branch_key(k))
    assert "opt_proj.weight" in report.sources["stage-2 checkpoint"]
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert model.opt_model.lm_head.weight is model.opt_model.get_input_embeddings().weight  # tied, as OPT


def test_a_trainable_only_checkpoint_resumes_strictly(opt_model, opt_config):
    trainable = {n: p.detach() + 1 for n, p in opt_model.named_parameters() if p.requires_grad}
    model = build(opt_config)
    model.load_state_dict(trainable, strict=True)  # the frozen ViT and OPT are not needed
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in trainable.items())
    with pytest.raises(RuntimeError, match="missing trainable weights.*opt_proj.weight"):
        model.load_state_dict({k: v for k, v in trainable.items() if k != "opt_proj.weight"}, strict=True)


def test_inputs_longer_than_opts_position_table_are_refused_with_the_option(lm):
    """OPT has a learned position table (T5 has none): a longer input is a clear error naming
    the limit and the option that cuts prompts, not an index error inside OPT."""
    limit = lm.model.config.max_position_embeddings
    assert limit == 1024  # the tiny model: room for the chat's default 512-token inputs
    long_text = "red " * (limit + 10)
    for call in (lambda: lm.score([[soft(11, 4), long_text]], ["a"]),
                 lambda: lm.generate([[soft(11, 4), long_text]], max_new_tokens=2),
                 lambda: lm.loss([[soft(11, 4), long_text]], ["a"])):
        with pytest.raises(ValueError, match=r"more than its max_position_embeddings \(1024\).*max_prompt_tokens"):
            call()
    # cut by the one truncation rule, the same text is fine
    assert lm.score([[soft(11, 4), long_text]], ["a"], max_text_tokens=32).shape == (1, 1)
