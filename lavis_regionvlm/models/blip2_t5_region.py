"""`blip2_t5_region`: BLIP-2 FlanT5 whose Q-Former also reads a region's points as text.

RegionVLM (Lee, Chun, Yun, NAACL 2024). A region is written as point text,
`"[32 64] [37 62]"`; the Q-Former runs on `[queries; BERT(point text)]`, only the
queries cross-attend to the image, and only the N query outputs go through
`t5_proj` to the frozen FlanT5 as a soft prompt. Empty point text is a global
(whole-image) sample.

Shapes used throughout: B images, R region rows (each row points to one image
through `image_index`), N query tokens, L image tokens, C ViT width, H Q-Former
width, D T5 width.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import re
from typing import Sequence

import torch
from lavis.common.registry import registry
from lavis.models.blip2_models.blip2 import disabled_train
from lavis.models.blip2_models.blip2_t5 import Blip2T5
from torch import nn

from lavis_regionvlm.models import builders
from lavis_regionvlm.models.geometric_init import init_number_embeddings_, init_sincos_pos_embed_
from lavis_regionvlm.models.checkpoints import LoadReport, copy_into_model
from lavis_regionvlm.models.lean_load import pages_released_after_copy, read_mapped
from lavis_regionvlm.models.inputs import region_texts_for, validate_samples
from lavis_regionvlm.models.point_embeddings import PointRowsEmbedding, point_text_token_ids
from lavis_regionvlm.models.t5_numerics import T5_SOFT_PROMPT_DTYPES, T5Numerics, t5_numerics
from lavis_regionvlm.paths import config_path

logger = logging.getLogger(__name__)

GLOBAL_REGION_MODES = ("empty_text", "query_only")
T5_PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32}
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


@registry.register_model("blip2_t5_region")
class Blip2T5Region(Blip2T5):
    """BLIP-2 FlanT5 with region (point-text) input to the Q-Former.

    Model types:
        - `tiny`: a few-MB model built offline from files the package ships (tests, quick start).
        - `pretrain_flant5xl`: BLIP-2 FlanT5-XL stage-2 weights plus the Q-Former text
          branch from the stage-1 checkpoint (or `bert-base-uncased` without it).
        - `regionvlm_flant5xl`: the authors' released RegionVLM checkpoint, from the
          path in `$REGIONVLM_CHECKPOINT` or the config's `finetuned`.
        - `pretrain_flant5xxl`, `regionvlm_flant5xxl`: the same with FlanT5-XXL (no released
          RegionVLM weights at this size: `regionvlm_flant5xxl` loads one you trained).
        The full-size types load leanly (`lean_load`); `t5_precision: fp32` runs them on GPUs
        without bfloat16.

    Usage:
        >>> from lavis.models import load_model_and_preprocess
        >>> model, vis, txt = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)
    """

    PRETRAINED_MODEL_CONFIG_DICT = {
        "tiny": config_path("models/blip2_t5_region_tiny.yaml"),
        "pretrain_flant5xl": config_path("models/blip2_t5_region_pretrain_flant5xl.yaml"),
        "regionvlm_flant5xl": config_path("models/blip2_t5_region_regionvlm_flant5xl.yaml"),
        "pretrain_flant5xxl": config_path("models/blip2_t5_region_pretrain_flant5xxl.yaml"),
        "regionvlm_flant5xxl": config_path("models/blip2_t5_region_regionvlm_flant5xxl.yaml"),
    }

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
        t5_model: str = "google/flan-t5-xl",
        t5_init: str = "pretrained",
        t5_precision: str = "bf16",
        freeze_t5: bool = True,
        prompt: str = "",
        max_txt_len: int = 32,
        apply_lemmatizer: bool = False,
        region_max_len: int = 32,
        global_region_mode: str = "empty_text",
        num_points: int = 10,
        point_quantize: str = "floor",
        init_seed: int | None = 0,
        geometric_init: bool = False,
        cpu_autocast: bool = False,
        qformer_bf16: bool = False,
        t5_soft_prompt_dtype: str = "float32",
        dropout: float | None = None,
        train_word_embeddings: str = "point_text",
        lean_load: bool = False,
        load_device: str | None = None,
    ):
        """Build the model. Every file reference may be a hub name, URL, local path or
        `regionvlm://...` package file.

        Region-specific arguments:
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
            dropout: if set, the rate of every dropout of the ViT, Q-Former and T5
                (None keeps their configs' rates). 0.0 trains the `tiny` model from
                scratch several times faster.
            train_word_embeddings: which Q-Former word-embedding rows train. "point_text"
                (default): only the 109 rows point text can use ("[", "]", "0".."100", special
                tokens), the only rows that get gradients, so training computes the same
                thing at less cost (see `point_embeddings.py`). "all": the whole table, as
                the released code (unused rows then only decay).
            t5_precision: T5's weight dtype. "bf16" (as released); "fp32" for GPUs without
                bfloat16 (T4, V100), with the ViT still in fp16. "fp16" is refused: FlanT5
                overflows in float16.
            lean_load: build the ViT and T5 on the meta device and stream their files
                (`vit_weights`, the `t5_model` folder's weights) memory-mapped straight into
                their final dtype, and map the checkpoints this model loads; the same
                weights, bit for bit, at about the final weights' size in peak memory
                instead of about twice (see `lean_load.py`). Parts with random weights are
                built as usual.
            load_device: the device the model ends up on after building (None: CPU, as
                LAVIS); with `lean_load` the ViT's and T5's weights go straight there, the
                rest is built on CPU and moved.
            cpu_autocast: on CPU, run the ViT, the Q-Former and T5 under bfloat16 autocast
                (about 1.8x faster on CPUs with AVX512-BF16 or AMX; scores move by bf16
                rounding). Off by default: on CPU LAVIS runs everything in float32. On GPU
                this flag changes nothing (LAVIS's autocast: ViT fp16, Q-Former fp32, T5 as
                `t5_soft_prompt_dtype` says).
            qformer_bf16: on GPU, run the Q-Former under bfloat16 autocast too (LAVIS runs it in
                fp32 outside amp training; for RIS it scores 100 rows per image, which fp32 makes
                the largest part of our scoring time on an A100 by the cost model). Off by default.
            t5_soft_prompt_dtype: how every T5 call runs (see `t5_numerics.py`). "float32"
                (default, as released): the soft prompt and token embeddings enter T5 in
                float32, under float32 autocast on GPU (bfloat16 weights are cast up).
                "model": they enter in T5's weight dtype, under bfloat16 autocast on GPU (less
                memory, faster; scores move by bfloat16 rounding).
        """
        # Blip2T5.__init__ deletes the Q-Former text branch and downloads fixed names;
        # this model builds its parts itself, so only the base initialiser runs.
        super(Blip2T5, self).__init__()
        if global_region_mode not in GLOBAL_REGION_MODES:
            raise ValueError(
                f"global_region_mode must be one of {GLOBAL_REGION_MODES}, got {global_region_mode!r}"
            )
        if train_word_embeddings not in WORD_EMBEDDING_TRAINING:
            raise ValueError(
                f"train_word_embeddings must be one of {WORD_EMBEDDING_TRAINING}, got {train_word_embeddings!r}"
            )
        if t5_soft_prompt_dtype not in T5_SOFT_PROMPT_DTYPES:
            raise ValueError(
                f"t5_soft_prompt_dtype must be one of {T5_SOFT_PROMPT_DTYPES}, got {t5_soft_prompt_dtype!r}"
            )
        if t5_precision == "fp16":
            raise ValueError(
                "t5_precision 'fp16' is refused: FlanT5 overflows in float16 (its activations "
                "exceed 65504 and turn into inf/NaN). Use 'bf16', or 'fp32' on GPUs without "
                "bfloat16 (T4, V100), where the ViT still runs in fp16"
            )
        if t5_precision not in T5_PRECISIONS:
            raise ValueError(f"t5_precision must be one of {tuple(T5_PRECISIONS)}, got {t5_precision!r}")
        if region_max_len < 2:
            raise ValueError(f"region_max_len must leave room for [CLS] and [SEP], got {region_max_len}")
        seeded = torch.random.fork_rng() if init_seed is not None else contextlib.nullcontext()
        with seeded:
            if init_seed is not None:
                torch.manual_seed(init_seed)
            self._build(
                vit_model, img_size, drop_path_rate, use_grad_checkpoint, vit_precision,
                vit_config, vit_weights, num_query_token, qformer_bert, qformer_init,
                cross_attention_freq, t5_model, t5_init,
                lean=lean_load, t5_dtype=T5_PRECISIONS[t5_precision], device=load_device,
            )
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
        if freeze_t5:
            for param in self.t5_model.parameters():
                param.requires_grad = False
        if load_device:
            self.to(load_device)

        self.img_size = img_size
        self.prompt = prompt
        self.max_txt_len = max_txt_len
        self.region_max_len = region_max_len
        self.global_region_mode = global_region_mode
        self.num_points = num_points
        self.point_quantize = point_quantize
        self._apply_lemmatizer = apply_lemmatizer
        self._lemmatizer = None
        self.cpu_autocast = cpu_autocast
        self.qformer_bf16 = qformer_bf16
        self.t5_soft_prompt_dtype = t5_soft_prompt_dtype
        self.lean_load = lean_load
        self.load_report: LoadReport | None = None

    def maybe_autocast(self, dtype: torch.dtype = torch.float16):
        """LAVIS's autocast on GPU (`dtype`, as each caller asks); on CPU none, or bfloat16
        when `cpu_autocast` is set (the only half type CPUs run fast)."""
        if self.device.type == "cpu":
            if self.cpu_autocast:
                return torch.autocast("cpu", dtype=torch.bfloat16)
            return contextlib.nullcontext()
        return super().maybe_autocast(dtype)

    def t5_numerics(self) -> T5Numerics:
        """T5's input dtype and autocast for this model's device and weights: the one place
        every T5 call (loss, scores, RIS, VCR, generation) takes them from."""
        return t5_numerics(
            self.t5_soft_prompt_dtype, self.device.type,
            self.t5_model.encoder.embed_tokens.weight.dtype, self.cpu_autocast,
        )

    def t5_autocast(self):
        """The context every T5 call runs in (see `t5_numerics`)."""
        return self.t5_numerics().autocast()

    def qformer_precision(self):
        """The Q-Former's precision context: float32 as in LAVIS, or bfloat16 autocast on CPU
        with `cpu_autocast` and on GPU with `qformer_bf16`."""
        device = self.device.type
        if (device == "cpu" and self.cpu_autocast) or (device == "cuda" and self.qformer_bf16):
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _build(
        self, vit_model, img_size, drop_path_rate, use_grad_checkpoint, vit_precision,
        vit_config, vit_weights, num_query_token, qformer_bert, qformer_init,
        cross_attention_freq, t5_model, t5_init,
        lean: bool = False, t5_dtype: torch.dtype | None = None, device: str | None = None,
    ) -> None:
        self.tokenizer = builders.build_bert_tokenizer(qformer_bert)
        self.visual_encoder, self.ln_vision = builders.build_vision_encoder(
            vit_model, img_size, drop_path_rate, use_grad_checkpoint, vit_precision,
            vit_config, vit_weights, lean=lean, device=device,
        )
        self.Qformer, self.query_tokens = builders.build_qformer(
            qformer_bert, self.visual_encoder.num_features, num_query_token,
            cross_attention_freq, qformer_init,
        )
        # Room for BLIP-2's [DEC] token, as the stage-1 checkpoint has (30523 rows).
        self.Qformer.resize_token_embeddings(len(self.tokenizer))
        self.Qformer.cls = None  # the LM head is never used
        self.t5_tokenizer, self.t5_model = builders.build_t5(
            t5_model, t5_init, lean=lean, dtype=t5_dtype, device=device
        )
        self.t5_proj = nn.Linear(self.Qformer.config.hidden_size, self.t5_model.config.hidden_size)

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
        """Q-Former + `t5_proj` for R regions: -> soft prompts (R, N, D).

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
        return self.t5_proj(self.query_outputs(rows, region_text))

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

    def t5_encoder_inputs(
        self, region_embeds: torch.Tensor, prompts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`[soft prompt; embed(prompt)]` for the T5 encoder.

        region_embeds (R, N, D) and R prompts -> inputs_embeds (R, N + T, D), in
        `t5_numerics().input_dtype`, and their attention mask (R, N + T). An empty prompt
        embeds as `</s>` alone.
        """
        tokens = self.t5_tokenizer(
            list(prompts), padding="longest", truncation=True, max_length=self.max_txt_len,
            return_tensors="pt",
        ).to(region_embeds.device)
        atts = torch.ones(region_embeds.shape[:-1], dtype=torch.long, device=region_embeds.device)
        dtype = self.t5_numerics().input_dtype
        text_embeds = self.t5_model.encoder.embed_tokens(tokens.input_ids)
        inputs_embeds = torch.cat([region_embeds.to(dtype), text_embeds.to(dtype)], dim=1)
        return inputs_embeds, torch.cat([atts, tokens.attention_mask], dim=1)

    def _target_tokens(self, texts: Sequence[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Target ids (R, T) with padding set to -100, and their attention mask (R, T)."""
        tokens = self.t5_tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.max_txt_len,
            return_tensors="pt",
        ).to(device)
        labels = tokens.input_ids.masked_fill(
            tokens.input_ids == self.t5_tokenizer.pad_token_id, -100
        )
        return labels, tokens.attention_mask

    # ------------------------------------------------------------------ training

    def forward(self, samples: dict) -> dict:
        """LM loss of `text_output` given the region and `text_input`.

        samples: `image` (B, 3, S, S); `region_text` (B point texts, "" for global; may be
        absent: all global); `text_input` (B T5 prompts, may be ""); `text_output`
        (B targets). Returns {"loss": scalar}.
        """
        validate_samples(samples, ("image", "text_input", "text_output"))
        image = samples["image"]
        region_embeds = self.encode_regions(
            self.encode_image(image), region_texts_for(samples, image.shape[0])
        )
        with self.t5_autocast():
            inputs_embeds, encoder_atts = self.t5_encoder_inputs(
                region_embeds, _as_list(samples["text_input"], image.shape[0], "text_input")
            )
            labels, decoder_atts = self._target_tokens(
                _as_list(samples["text_output"], image.shape[0], "text_output"), image.device
            )
            outputs = self.t5_model(
                inputs_embeds=inputs_embeds,
                attention_mask=encoder_atts,
                decoder_attention_mask=decoder_atts,
                return_dict=True,
                labels=labels,
            )
        return {"loss": outputs.loss}

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def score(self, samples: dict) -> torch.Tensor:
        """Per-pair LM loss: mean token NLL of `text_output` (its `</s>` included, padding
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
        with self.t5_autocast():
            inputs_embeds, encoder_atts = self.t5_encoder_inputs(region_embeds, text_input)
            encoder_out = self.t5_model.encoder(
                inputs_embeds=inputs_embeds, attention_mask=encoder_atts, return_dict=True
            )
            return self.decoder_nll(encoder_out.last_hidden_state, encoder_atts, text_output)

    def decoder_nll(
        self,
        encoder_hidden: torch.Tensor,
        encoder_atts: torch.Tensor,
        text_output: Sequence[str],
    ) -> torch.Tensor:
        """Mean token NLL (R,) of R targets given T5 encoder states (R, S, D) and mask (R, S)."""
        labels, decoder_atts = self._target_tokens(text_output, encoder_hidden.device)
        outputs = self.t5_model(
            encoder_outputs=(encoder_hidden,),
            attention_mask=encoder_atts,
            decoder_attention_mask=decoder_atts,
            labels=labels,
            return_dict=True,
            reduction="none",
        )
        return outputs.loss.float() / decoder_atts.sum(dim=1).clamp(min=1).float()

    # ------------------------------------------------------------------ generation

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
        `prompt` (str or B strings; default the model's prompt, "" = just `</s>`).
        """
        validate_samples(samples, ("image",))
        image = samples["image"]
        batch = image.shape[0]
        region_embeds = self.encode_regions(self.encode_image(image), region_texts_for(samples, batch))
        prompts = _as_list(samples.get("prompt", self.prompt), batch, "prompt")
        return self.generate_from_embeddings(
            region_embeds, prompts,
            do_sample=use_nucleus_sampling, top_p=top_p, temperature=temperature,
            num_beams=num_beams, max_new_tokens=max_length, min_length=min_length,
            repetition_penalty=repetition_penalty, length_penalty=length_penalty,
            num_return_sequences=num_captions,
        )

    @torch.no_grad()
    def generate_from_embeddings(
        self, region_embeds: torch.Tensor, prompts: Sequence[str], **generate_kwargs
    ) -> list[str]:
        """Generate from soft prompts (R, N, D) and R text prompts; kwargs go to T5 `generate`."""
        with self.t5_autocast():
            inputs_embeds, encoder_atts = self.t5_encoder_inputs(region_embeds, prompts)
            outputs = self.t5_model.generate(
                inputs_embeds=inputs_embeds, attention_mask=encoder_atts, **generate_kwargs
            )
            return self.t5_tokenizer.batch_decode(outputs, skip_special_tokens=True)

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
        image = samples["image"]
        batch = image.shape[0]
        questions = _as_list(samples["text_input"], batch, "text_input")
        prompts = [prompt.format(q) for q in questions] if prompt else questions
        region_embeds = self.encode_regions(self.encode_image(image), region_texts_for(samples, batch))
        if inference_method == "generate":
            answers = self.generate_from_embeddings(
                region_embeds, prompts, do_sample=False, num_beams=num_beams,
                max_new_tokens=max_len, min_length=min_len, length_penalty=length_penalty,
            )
        elif inference_method == "rank":
            if not answer_list:
                raise ValueError("inference_method 'rank' needs a non-empty answer_list")
            answers = self._rank_answers(region_embeds, prompts, list(answer_list))
        else:
            raise ValueError(f"inference_method must be 'generate' or 'rank', got {inference_method!r}")
        return self._lemmatize(answers) if self._apply_lemmatizer else answers

    @torch.no_grad()
    def _rank_answers(
        self, region_embeds: torch.Tensor, prompts: list[str], answer_list: list[str]
    ) -> list[str]:
        """For each of R prompts, the candidate with the lowest mean token NLL.

        The T5 encoder runs once per prompt; only the decoder runs per candidate.
        """
        with self.t5_autocast():
            inputs_embeds, encoder_atts = self.t5_encoder_inputs(region_embeds, prompts)
            hidden = self.t5_model.encoder(
                inputs_embeds=inputs_embeds, attention_mask=encoder_atts, return_dict=True
            ).last_hidden_state
            best = []
            for row in range(hidden.shape[0]):
                count = len(answer_list)
                nll = self.decoder_nll(
                    hidden[row : row + 1].expand(count, -1, -1),
                    encoder_atts[row : row + 1].expand(count, -1),
                    answer_list,
                )
                best.append(answer_list[int(nll.argmin())])
        return best

    # ------------------------------------------------------------------ loading

    def load_from_pretrained(self, url_or_filename: str) -> LoadReport:
        """Load a BLIP-2 stage-2 checkpoint, then the Q-Former text branch from the
        stage-1 checkpoint named by `text_branch_pretrained` in the config (if any).

        Stage-2 FlanT5 checkpoints were saved without the text branch; it keeps its
        `qformer_bert` initial weights when no stage-1 file is given. The report
        (also at `self.load_report`) says which tensors came from where.
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
        """State-dict keys of frozen parameters (ViT, T5): they come from their own
        pretrained files, so checkpoints of this model need not hold them."""
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
        would fail on the absent frozen ViT/T5 weights; here their absence is expected,
        while a missing trainable weight or an unknown key still raises.
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
                    f"checkpoint does not match blip2_t5_region: missing trainable weights "
                    f"{missing[:8]}, unexpected keys {result.unexpected_keys[:8]}"
                )
        return result

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
    def from_config(cls, cfg) -> "Blip2T5Region":
        """Build from a LAVIS model config (see the YAMLs under `configs/models/`).

        Keys are the constructor's arguments (LAVIS's `image_size` for `img_size`), plus
        `text_branch_pretrained` and LAVIS's `load_pretrained`/`pretrained`,
        `load_finetuned`/`finetuned`.
        """
        arguments = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs = {name: cfg.get(name) for name in arguments if cfg.get(name) is not None}
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
    """Set the rate of every `nn.Dropout` in `model`, and of T5 attention, which keeps it
    as a float `dropout` attribute."""
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
