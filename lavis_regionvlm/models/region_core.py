"""The language-model-independent part of every RegionVLM model: BLIP-2's Q-Former reading
a region's points as text.

RegionVLM (Lee, Chun, Yun, NAACL 2024). A region is written as point text,
`"[32 64] [37 62]"`; the Q-Former runs on `[queries; BERT(point text)]`, only the queries
cross-attend to the image, and only the N query outputs go through a linear projection to
the frozen language model as a soft prompt. Empty point text is a global (whole-image)
sample.

`RegionBlip2` holds everything that does not depend on the language model: the ViT, the
Q-Former with its text branch and point-row embeddings, `encode_image`, `encode_regions`,
checkpoint loading (stage-2 + stage-1 text branch, the strict trainable-weights check),
`from_config`, and LAVIS's model API (`forward`, `generate`, `predict_answers`, `score`),
written once on top of `self.lm` (`lm/base.py`). A subclass adds one language model: it
builds it (`_build_lm`), names its projection (`lm_projection`) and wraps it as a `RegionLM`
(`lm`). See `blip2_t5_region.py` and `blip2_opt_region.py`.

Shapes used throughout: B images, R region rows (each row points to one image through
`image_index`), N query tokens, L image tokens, C ViT width, H Q-Former width, D language
model width.
"""
from __future__ import annotations

import abc
import contextlib
import difflib
import inspect
import logging
import re
from typing import Any, Sequence

import torch
from lavis.models.blip2_models.blip2 import Blip2Base, disabled_train
from torch import nn

from lavis_regionvlm.models import builders
from lavis_regionvlm.models.checkpoints import LoadReport, copy_into_model
from lavis_regionvlm.models.geometric_init import init_number_embeddings_, init_sincos_pos_embed_
from lavis_regionvlm.models.inputs import region_texts_for, validate_samples
from lavis_regionvlm.models.lean_load import pages_released_after_copy, read_mapped
from lavis_regionvlm.models.lm.base import RegionLM
from lavis_regionvlm.models.point_embeddings import PointRowsEmbedding, point_text_token_ids
from lavis_regionvlm.regions.region_input import PointTextSpec

logger = logging.getLogger(__name__)

GLOBAL_REGION_MODES = ("empty_text", "query_only")
# Model-config keys LAVIS (or our loader) reads besides the constructor's arguments.
LAVIS_CONFIG_KEYS = frozenset({"arch", "model_type", "load_finetuned", "load_pretrained", "pretrained", "finetuned",
                               "text_branch_pretrained", "image_size"})
WORD_EMBEDDING_TRAINING = ("point_text", "all")

_TEXT_BRANCH_KEY = re.compile(
    r"^Qformer\.bert\.(embeddings\.(word|position)_embeddings\."
    r"|encoder\.layer\.\d+\.(intermediate|output)\.)"
)


def is_text_branch_key(key: str) -> bool:
    """True for Q-Former weights used only by text tokens (absent from stage-2 checkpoints).

    These are the word/position embeddings and each layer's text feed-forward
    (`layer.i.intermediate.*`, `layer.i.output.*`), not the query feed-forward
    (`*_query.*`) nor the attention blocks, which queries and text share.
    """
    return _TEXT_BRANCH_KEY.match(key) is not None


class RegionBlip2(Blip2Base, abc.ABC):
    """BLIP-2 with region (point-text) input to the Q-Former, for any language model.

    Subclasses implement `_build_lm`, `lm_projection`, `lm` and `_freeze_lm`, and call
    `RegionBlip2.__init__` with the language model's own arguments in `lm_args`.
    """

    def __init__(
        self,
        vit_model: str = "eva_clip_g",
        img_size: int = 364,
        drop_path_rate: float = 0.0,
        use_grad_checkpoint: bool = False,
        vit_precision: str = "fp16",
        freeze_vit: bool = True,
        vit_config: dict | None = None,
        vit_weights: str | None = None,
        num_query_token: int = 32,
        qformer_bert: str = "bert-base-uncased",
        qformer_init: str = "pretrained",
        cross_attention_freq: int = 2,
        prompt: str = "",
        max_txt_len: int = 32,
        max_prompt_tokens: int | None = None,
        apply_lemmatizer: bool = False,
        region_max_len: int = 32,
        global_region_mode: str = "empty_text",
        num_points: int = 10,
        point_quantize: str = "floor",
        init_seed: int | None = 0,
        geometric_init: bool = False,
        cpu_autocast: bool = False,
        qformer_bf16: bool = False,
        dropout: float | None = None,
        train_word_embeddings: str = "point_text",
        lean_load: bool = False,
        load_device: str | None = None,
        lm_args: dict | None = None,
    ):
        """Build the model. Every file reference may be a hub name, URL, local path or
        `regionvlm://...` package file.

        Region-specific arguments:
            max_txt_len: the text limit of training, in language-model tokens with the special
                tokens: prompts and targets are cut there (as released); scored candidates too.
            max_prompt_tokens: the same limit for inference prompts (`generate`,
                `predict_answers`, `score`, the predictor, chat, VCR, RIS). None (default, as
                the released `predict_answers` and region QA): no cut.
            region_max_len: Q-Former text limit in BERT tokens, [CLS] and [SEP] included.
                32 reproduces the released code (about 7 of 10 points reach the Q-Former:
                each point is 4 tokens).
            global_region_mode: how empty point text is encoded. "empty_text" runs the
                Q-Former on the BERT tokens of "" ([CLS][SEP]), as the released code
                trains; "query_only" runs the stock BLIP-2 query-only pass, as the
                released VQA evaluation does.
            num_points, point_quantize: K and the rounding that callers (processors,
                predictor, RIS) use to write regions as text for this model.
            init_seed: seed for randomly initialised weights, so a `tiny` model is
                the same every time it is built; None leaves the global RNG alone.
            geometric_init: give randomly initialised parts a sense of position: number
                tokens get sinusoidal codes of their value (when `qformer_init` is
                "random") and ViT patches 2-D sine-cosine position codes (when there are
                no `vit_weights`). See `geometric_init.py`; for training from scratch.
            dropout: if set, the rate of every dropout of the ViT, Q-Former and language model
                (None keeps their configs' rates). 0.0 trains the `tiny` model from
                scratch several times faster.
            train_word_embeddings: which Q-Former word-embedding rows train. "point_text"
                (default): only the 109 rows point text can use ("[", "]", "0".."100", special
                tokens), the only rows that get gradients, so training computes the same
                thing at less cost (see `point_embeddings.py`). "all": the whole table, as
                the released code (unused rows then only decay).
            lean_load: build the ViT and the language model on the meta device and stream their
                files memory-mapped straight into their final dtype, and map the checkpoints
                this model loads; the same weights, bit for bit, at about the final weights'
                size in peak memory instead of about twice (see `lean_load.py`). Parts with
                random weights are built as usual.
            load_device: the device the model ends up on after building (None: CPU, as
                LAVIS); with `lean_load` the ViT's and language model's weights go straight
                there, the rest is built on CPU and moved.
            cpu_autocast: on CPU, run the ViT, the Q-Former and the language model under
                bfloat16 autocast (about 1.8x faster on CPUs with AVX512-BF16 or AMX; scores
                move by bf16 rounding). Off by default: on CPU LAVIS runs everything in
                float32.
            qformer_bf16: on GPU, run the Q-Former under bfloat16 autocast too (LAVIS runs it in
                fp32 outside amp training; for RIS it scores 100 rows per image). Off by default.
            lm_args: the subclass's language-model arguments, passed to `_build_lm`.
        """
        super().__init__()
        if global_region_mode not in GLOBAL_REGION_MODES:
            raise ValueError(
                f"global_region_mode must be one of {GLOBAL_REGION_MODES}, got {global_region_mode!r}"
            )
        if train_word_embeddings not in WORD_EMBEDDING_TRAINING:
            raise ValueError(
                f"train_word_embeddings must be one of {WORD_EMBEDDING_TRAINING}, got {train_word_embeddings!r}"
            )
        if region_max_len < 2:
            raise ValueError(f"region_max_len must leave room for [CLS] and [SEP], got {region_max_len}")
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be None (no cut) or at least 1, got {max_prompt_tokens}")
        lm_args = dict(lm_args or {})
        self._check_lm_args(lm_args)
        seeded = torch.random.fork_rng() if init_seed is not None else contextlib.nullcontext()
        with seeded:
            if init_seed is not None:
                torch.manual_seed(init_seed)
            self.tokenizer = builders.build_bert_tokenizer(qformer_bert)
            self.visual_encoder, self.ln_vision = builders.build_vision_encoder(
                vit_model, img_size, drop_path_rate, use_grad_checkpoint, vit_precision,
                vit_config, vit_weights, lean=lean_load, device=load_device,
            )
            self.Qformer, self.query_tokens = builders.build_qformer(
                qformer_bert, self.visual_encoder.num_features, num_query_token,
                cross_attention_freq, qformer_init,
            )
            # Room for BLIP-2's [DEC] token, as the stage-1 checkpoint has (30523 rows).
            self.Qformer.resize_token_embeddings(len(self.tokenizer))
            self.Qformer.cls = None  # the LM head is never used
            self._build_lm(lean=lean_load, device=load_device, **lm_args)
        if dropout is not None:
            set_dropout_(self, dropout)
        if geometric_init:
            if qformer_init == "random":
                init_number_embeddings_(self.Qformer.bert.embeddings.word_embeddings, self.tokenizer)
            if not vit_weights and vit_model != "clip_L":
                init_sincos_pos_embed_(self.visual_encoder)
        if train_word_embeddings == "point_text":
            embeddings = self.Qformer.bert.embeddings
            embeddings.word_embeddings = PointRowsEmbedding(
                embeddings.word_embeddings, point_text_token_ids(self.tokenizer)
            )
        if freeze_vit:
            for param in self.visual_encoder.parameters():
                param.requires_grad = False
            self.visual_encoder = self.visual_encoder.eval()
            self.visual_encoder.train = disabled_train
        self._freeze_lm(**lm_args)
        if load_device:
            self.to(load_device)

        self.img_size = img_size
        self.prompt = prompt
        self.max_txt_len = max_txt_len
        self.max_prompt_tokens = max_prompt_tokens
        self.region_max_len = region_max_len
        self.global_region_mode = global_region_mode
        self.num_points = num_points
        self.point_quantize = point_quantize
        self._apply_lemmatizer = apply_lemmatizer
        self._lemmatizer = None
        self.cpu_autocast = cpu_autocast
        self.qformer_bf16 = qformer_bf16
        self.lean_load = lean_load
        self.load_report: LoadReport | None = None

    # ------------------------------------------------------------------ what a language model adds

    def _check_lm_args(self, lm_args: dict) -> None:
        """Refuse bad language-model arguments before anything is built (default: none)."""

    @abc.abstractmethod
    def _build_lm(self, lean: bool, device: str | None, **lm_args: Any) -> None:
        """Build the language model, its tokenizer and the projection H -> D (called in the
        seeded build, after the Q-Former)."""

    @abc.abstractmethod
    def _freeze_lm(self, **lm_args: Any) -> None:
        """Freeze the language model's weights (as its `freeze_*` argument says)."""

    @property
    @abc.abstractmethod
    def lm_projection(self) -> nn.Module:
        """The linear map from Q-Former width H to the language model's width D."""

    @property
    @abc.abstractmethod
    def lm(self) -> RegionLM:
        """The language model behind the `RegionLM` interface (a light view, made per call)."""

    @property
    def point_spec(self) -> PointTextSpec:
        """How this model's regions are written as point text (K = `num_points`, the
        `point_quantize` rounding): every entry point writes regions through it."""
        return PointTextSpec(num_points=int(self.num_points), quantize=self.point_quantize)

    # ------------------------------------------------------------------ precision

    def maybe_autocast(self, dtype: torch.dtype = torch.float16):
        """LAVIS's autocast on GPU (`dtype`, as each caller asks); on CPU none, or bfloat16
        when `cpu_autocast` is set (the only half type CPUs run fast)."""
        if self.device.type == "cpu":
            if self.cpu_autocast:
                return torch.autocast("cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()
        return super().maybe_autocast(dtype)

    def qformer_precision(self):
        """The Q-Former's precision context: float32 as in LAVIS, or bfloat16 autocast on CPU
        with `cpu_autocast` and on GPU with `qformer_bf16`."""
        device = self.device.type
        if (device == "cpu" and self.cpu_autocast) or (device == "cuda" and self.qformer_bf16):
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ encoding

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """ViT + `ln_vision`: images (B, 3, S, S) -> image embeddings (B, L, C), float32.

        This is the expensive step; keep its output to ask about many regions.
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be a (B, 3, H, W) tensor, got shape {tuple(image.shape)}")
        with self.maybe_autocast():
            image_embeds = self.ln_vision(self.visual_encoder(image))
        return image_embeds.float()

    def encode_regions(
        self,
        image_embeds: torch.Tensor,
        region_text: Sequence[str],
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Q-Former + projection for R regions: -> soft prompts (R, N, D).

        Args:
            image_embeds: (B, L, C) from `encode_image`.
            region_text: R point texts ("" for the whole image).
            image_index: (R,) long, the image row of each region; None means R == B, row i
                uses image i.
        """
        if image_index is None:
            if len(region_text) != image_embeds.shape[0]:
                raise ValueError(
                    f"{len(region_text)} region texts for {image_embeds.shape[0]} images; "
                    "pass image_index to map regions to images"
                )
            rows = image_embeds
        else:
            rows = image_embeds[image_index.to(image_embeds.device)]
        return self.lm_projection(self.query_outputs(rows, region_text))

    def query_outputs(self, image_embeds: torch.Tensor, region_text: Sequence[str]) -> torch.Tensor:
        """The Q-Former's N query outputs Z_hat (R, N, H), one row per (image row, text).

        Rows with point text run on `[Z; W]`; rows with "" run as `global_region_mode`
        says. The point-token outputs are dropped.
        """
        query_only = [
            i for i, text in enumerate(region_text)
            if text == "" and self.global_region_mode == "query_only"
        ]
        with_text = [i for i in range(len(region_text)) if i not in set(query_only)]
        out = image_embeds.new_empty(
            (len(region_text), self.query_tokens.shape[1], self.query_tokens.shape[2])
        )
        with self.qformer_precision():
            if query_only:
                out[query_only] = self._qformer_pass(image_embeds[query_only], None)
            if with_text:
                out[with_text] = self._qformer_pass(
                    image_embeds[with_text], [region_text[i] for i in with_text]
                )
        return out

    def _qformer_pass(self, image_embeds: torch.Tensor, texts: list[str] | None) -> torch.Tensor:
        """One Q-Former call: (R, L, C) image rows [+ R texts] -> (R, N, H) query outputs."""
        rows = image_embeds.shape[0]
        query_tokens = self.query_tokens.expand(rows, -1, -1)
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        if texts is None:  # the stock BLIP-2 pass, bit for bit
            output = self.Qformer.bert(
                query_embeds=query_tokens,
                encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts,
                return_dict=True,
            )
            return output.last_hidden_state
        tokens = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.region_max_len,
            return_tensors="pt",
        ).to(image_embeds.device)
        query_atts = torch.ones(query_tokens.shape[:-1], dtype=torch.long, device=image_embeds.device)
        output = self.Qformer.bert(
            tokens.input_ids,
            query_embeds=query_tokens,
            attention_mask=torch.cat([query_atts, tokens.attention_mask], dim=1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            return_dict=True,
        )
        return output.last_hidden_state[:, : query_tokens.shape[1]]

    def _sample_regions(self, samples: dict) -> torch.Tensor:
        """Soft prompts (B, N, D) of a LAVIS batch: its images with its `region_text`."""
        image = samples["image"]
        return self.encode_regions(self.encode_image(image), region_texts_for(samples, image.shape[0]))

    # ------------------------------------------------------------------ LAVIS's model API

    def forward(self, samples: dict) -> dict:
        """LM loss of `text_output` given the region and `text_input`.

        samples: `image` (B, 3, S, S); `region_text` (B point texts, "" for global; may be
        absent: all global); `text_input` (B prompts, may be ""); `text_output`
        (B targets). Returns {"loss": scalar}. Prompts and targets are cut at `max_txt_len`.
        """
        validate_samples(samples, ("image", "text_input", "text_output"))
        batch = samples["image"].shape[0]
        region_embeds = self._sample_regions(samples)
        prompts = _as_list(samples["text_input"], batch, "text_input")
        targets = _as_list(samples["text_output"], batch, "text_output")
        loss = self.lm.loss([[z, p] for z, p in zip(region_embeds, prompts)], targets, self.max_txt_len)
        return {"loss": loss}

    @torch.no_grad()
    def score(self, samples: dict) -> torch.Tensor:
        """Per-pair LM loss: mean token NLL of `text_output` (the end token included, padding
        excluded) given each region. samples as in `forward`; returns (B,) float32."""
        validate_samples(samples, ("image", "text_output"))
        image = samples["image"]
        batch = image.shape[0]
        return self.score_regions(
            self.encode_image(image),
            region_texts_for(samples, batch),
            _as_list(samples["text_output"], batch, "text_output"),
            _as_list(samples.get("text_input", ""), batch, "text_input"),
        )

    @torch.no_grad()
    def score_regions(
        self,
        image_embeds: torch.Tensor,
        region_text: Sequence[str],
        text_output: Sequence[str],
        text_input: Sequence[str] | None = None,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-pair LM loss from cached image embeddings.

        image_embeds (B, L, C) from `encode_image`; R region texts, R targets, R prompts
        (default ""); image_index (R,) maps rows to images. Returns (R,) mean token NLL.
        """
        rows = len(region_text)
        if len(text_output) != rows:
            raise ValueError(f"{rows} regions but {len(text_output)} texts to score")
        text_input = [""] * rows if text_input is None else list(text_input)
        region_embeds = self.encode_regions(image_embeds, region_text, image_index)
        scores = self.lm.score(
            [[z, p] for z, p in zip(region_embeds, text_input)],
            [[t] for t in text_output],
            max_text_tokens=self.max_prompt_tokens,
        )
        return scores[:, 0]

    @torch.no_grad()
    def generate(
        self,
        samples: dict,
        use_nucleus_sampling: bool = False,
        num_beams: int = 5,
        max_length: int = 30,
        min_length: int = 1,
        top_p: float = 0.9,
        repetition_penalty: float = 1.0,
        length_penalty: float = 1.0,
        num_captions: int = 1,
        temperature: float = 1,
    ) -> list[str]:
        """Caption regions (or whole images): B * num_captions strings.

        samples: `image` (B, 3, S, S), optional `region_text` (B point texts), optional
        `prompt` (str or B strings; default the model's prompt, "" = no text).
        """
        validate_samples(samples, ("image",))
        batch = samples["image"].shape[0]
        region_embeds = self._sample_regions(samples)
        prompts = _as_list(samples.get("prompt", self.prompt), batch, "prompt")
        return self.lm.generate(
            [[z, p] for z, p in zip(region_embeds, prompts)], self.max_prompt_tokens,
            do_sample=use_nucleus_sampling, top_p=top_p, temperature=temperature,
            num_beams=num_beams, max_new_tokens=max_length, min_length=min_length,
            repetition_penalty=repetition_penalty, length_penalty=length_penalty,
            num_return_sequences=num_captions,
        )

    @torch.no_grad()
    def predict_answers(
        self,
        samples: dict,
        num_beams: int = 5,
        inference_method: str = "generate",
        max_len: int = 10,
        min_len: int = 1,
        num_ans_candidates: int = 128,
        answer_list: Sequence[str] | None = None,
        prompt: str = "",
        length_penalty: float = -1,
        **kwargs,
    ) -> list[str]:
        """Answer B questions, about regions when `region_text` is given (LAVIS `vqa` task API).

        samples: `image` (B, 3, S, S), `text_input` (B questions), optional `region_text`.
        `prompt` is formatted with each question (e.g. "Question: {} Short answer:").
        inference_method "generate" decodes with beam search; "rank" returns the
        `answer_list` entry with the lowest LM loss.
        """
        validate_samples(samples, ("image", "text_input"))
        batch = samples["image"].shape[0]
        questions = _as_list(samples["text_input"], batch, "text_input")
        prompts = [prompt.format(q) for q in questions] if prompt else questions
        region_embeds = self._sample_regions(samples)
        inputs = [[z, p] for z, p in zip(region_embeds, prompts)]
        if inference_method == "generate":
            answers = self.lm.generate(
                inputs, self.max_prompt_tokens, do_sample=False, num_beams=num_beams,
                max_new_tokens=max_len, min_length=min_len, length_penalty=length_penalty,
            )
        elif inference_method == "rank":
            if not answer_list:
                raise ValueError("inference_method 'rank' needs a non-empty answer_list")
            answer_list = list(answer_list)
            scores = self.lm.score(inputs, answer_list, max_text_tokens=self.max_prompt_tokens)
            answers = [answer_list[int(i)] for i in scores.argmin(dim=1)]
        else:
            raise ValueError(f"inference_method must be 'generate' or 'rank', got {inference_method!r}")
        return self._lemmatize(answers) if self._apply_lemmatizer else answers

    def _lemmatize(self, answers: list[str]) -> list[str]:
        """Nouns and verbs to their lemma (spaCy `en_core_web_sm`), as LAVIS's VQA models do."""
        if self._lemmatizer is None:
            try:
                import spacy

                self._lemmatizer = spacy.load("en_core_web_sm")
            except (ImportError, OSError) as error:
                raise RuntimeError(
                    "apply_lemmatizer needs spaCy and its en_core_web_sm model: "
                    "pip install spacy && python -m spacy download en_core_web_sm"
                ) from error
        return [
            " ".join(t.lemma_ if t.pos_ in ("NOUN", "VERB") else t.text for t in self._lemmatizer(answer))
            for answer in answers
        ]

    # ------------------------------------------------------------------ loading

    def load_from_pretrained(self, url_or_filename: str) -> LoadReport:
        """Load a BLIP-2 stage-2 checkpoint, then the Q-Former text branch from the
        stage-1 checkpoint named by `text_branch_pretrained` in the config (if any).

        Stage-2 checkpoints were saved without the text branch; it keeps its `qformer_bert`
        initial weights when no stage-1 file is given. The report (also at
        `self.load_report`) says which tensors came from where.
        """
        report = LoadReport()
        self._copy_checkpoint(url_or_filename, report, "stage-2 checkpoint")
        text_branch = getattr(self, "_text_branch_pretrained", None)
        if text_branch:
            self._copy_checkpoint(text_branch, report, "stage-1 text branch", keep=is_text_branch_key)
        return self._finish_load(report, url_or_filename)

    def load_checkpoint(self, url_or_filename: str) -> LoadReport:
        """Load a fine-tuned checkpoint (e.g. the released RegionVLM weights, or one our
        runner saved, which holds the trainable weights only)."""
        report = LoadReport()
        self._copy_checkpoint(url_or_filename, report, "fine-tuned checkpoint")
        return self._finish_load(report, url_or_filename)

    def _copy_checkpoint(self, url_or_filename: str, report: LoadReport, label: str,
                         keep=lambda key: True) -> None:
        """`copy_into_model` from a file; with `lean_load` the file is memory-mapped and each
        module's pages are handed back once copied."""
        state_dict, mapped = read_mapped(url_or_filename, mmap=self.lean_load)
        released = pages_released_after_copy(self, state_dict) if mapped else contextlib.nullcontext()
        with released:
            copy_into_model(self, state_dict, report, label, keep=keep)

    def frozen_keys(self) -> set[str]:
        """State-dict keys of frozen parameters (ViT, language model): they come from their
        own pretrained files, so checkpoints of this model need not hold them."""
        return {name for name, p in self.named_parameters(remove_duplicate=False) if not p.requires_grad}

    def _tied_keys(self) -> dict[str, set[str]]:
        """For each parameter key, the other keys naming the same tensor (T5's shared
        embedding is also `encoder.embed_tokens` and `decoder.embed_tokens`)."""
        by_tensor: dict[int, set[str]] = {}
        for name, param in self.named_parameters(remove_duplicate=False):
            by_tensor.setdefault(id(param), set()).add(name)
        return {name: names - {name} for names in by_tensor.values() for name in names}

    def load_state_dict(self, state_dict, strict: bool = True, **kwargs):
        """`nn.Module.load_state_dict`, where `strict` asks for every trainable weight.

        LAVIS's runner saves trainable weights only and resumes with a strict load, which
        would fail on the absent frozen ViT / language-model weights; here their absence is
        expected, while a missing trainable weight or an unknown key still raises.
        """
        result = super().load_state_dict(state_dict, strict=False, **kwargs)
        if strict:
            frozen = self.frozen_keys()
            missing = [
                k for k in result.missing_keys
                if k not in frozen and not k.endswith("position_ids")
                and not self._tied_keys().get(k, set()) & set(state_dict)
            ]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"checkpoint does not match {self.registry_name()}: missing trainable weights "
                    f"{missing[:8]}, unexpected keys {result.unexpected_keys[:8]}"
                )
        return result

    @classmethod
    def registry_name(cls) -> str:
        """The name the class is registered under in LAVIS (its class name if none)."""
        from lavis.common.registry import registry

        names = [name for name, value in registry.mapping["model_name_mapping"].items() if value is cls]
        return names[0] if names else cls.__name__

    def _finish_load(self, report: LoadReport, source: str) -> LoadReport:
        loaded = {key for keys in report.sources.values() for key in keys}
        frozen = self.frozen_keys()
        tied = self._tied_keys()
        report.missing = sorted(
            key for key in self.state_dict()
            if key not in loaded and key not in frozen and not key.endswith("position_ids")
            and not tied.get(key, set()) & loaded
        )
        if report.mismatched:
            raise RuntimeError(f"checkpoint {source} does not fit the model: {report.summary()}")
        logger.info("loaded %s: %s", source, report.summary())
        self.load_report = report
        return report

    @classmethod
    def config_arguments(cls) -> set[str]:
        """The config keys the constructor reads: the subclass's and `RegionBlip2`'s arguments."""
        names = set(inspect.signature(cls.__init__).parameters) | set(
            inspect.signature(RegionBlip2.__init__).parameters
        )
        return names - {"self", "kwargs", "lm_args"}

    @classmethod
    def from_config(cls, cfg) -> "RegionBlip2":
        """Build from a LAVIS model config (see the YAMLs under `configs/models/`).

        Keys are the constructor's arguments (LAVIS's `image_size` for `img_size`), plus
        `text_branch_pretrained` and LAVIS's `load_pretrained`/`pretrained`,
        `load_finetuned`/`finetuned`; any other key is refused, with the closest known one.
        """
        # The config's `preprocess` names the plugin's processors, which LAVIS looks up right
        # after this: make sure every plugin name is registered, also when a plugin module (not
        # LAVIS) was imported first and the start-up hook therefore registered nothing.
        import lavis_regionvlm.registration  # noqa: F401

        unknown = sorted(set(cfg) - cls.config_arguments() - LAVIS_CONFIG_KEYS)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(cls.config_arguments() | LAVIS_CONFIG_KEYS), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"the model config of {cls.registry_name()} has unknown keys: {', '.join(hints)}; "
                f"remove them, or see the arguments of {cls.__name__} and RegionBlip2"
            )
        kwargs = {name: cfg.get(name) for name in cls.config_arguments() if cfg.get(name) is not None}
        if cfg.get("image_size") is not None:
            kwargs["img_size"] = cfg.get("image_size")
        model = cls(**kwargs)
        model._text_branch_pretrained = cfg.get("text_branch_pretrained")
        model.load_checkpoint_from_config(cfg)
        return model

    def load_checkpoint_from_config(self, cfg, **kwargs) -> LoadReport | None:
        """Load what the config names: `finetuned` when `load_finetuned`, else `pretrained`
        when `load_pretrained` (LAVIS 1.0.2's base class ignores `load_pretrained`), else
        nothing (the `tiny` model's seeded random weights)."""
        if cfg.get("load_finetuned", True):
            if not cfg.get("finetuned"):
                raise ValueError(
                    f"model type {cfg.get('model_type')!r} loads a fine-tuned checkpoint but "
                    "none is set: set the environment variable REGIONVLM_CHECKPOINT to its "
                    "path, or `finetuned:` in the model config"
                )
            return self.load_checkpoint(cfg.get("finetuned"))
        if cfg.get("load_pretrained", True):
            if not cfg.get("pretrained"):
                raise ValueError(
                    f"model type {cfg.get('model_type')!r} has load_pretrained set but no "
                    "`pretrained:` checkpoint"
                )
            return self.load_from_pretrained(cfg.get("pretrained"))
        return None


def set_dropout_(model: nn.Module, rate: float) -> None:
    """Set the rate of every `nn.Dropout` in `model`, and of attention modules that keep it as
    a float `dropout` attribute (T5, OPT)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = float(rate)
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = float(rate)


def _as_list(value, batch: int, name: str) -> list[str]:
    """A str for the whole batch or a sequence of `batch` strs -> list of `batch` strs."""
    if isinstance(value, str):
        return [value] * batch
    value = list(value)
    if len(value) != batch:
        raise ValueError(f"samples['{name}'] has {len(value)} entries for a batch of {batch}")
    if not all(isinstance(v, str) for v in value):
        raise TypeError(f"samples['{name}'] must hold strings, got {[type(v).__name__ for v in value][:4]}")
    return value
