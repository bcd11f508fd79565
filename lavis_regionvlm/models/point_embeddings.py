"""Q-Former word embeddings that train only the rows point text uses.

The Q-Former reads nothing but point text ("[32 64] [37 62]") and the empty text of global
samples, so of BERT's 30,523 embedding rows at most 109 ever receive a gradient: "[",
"]", "0".."100" and the special tokens. Training the whole table, as the released code does,
still costs a dense (30523, 768) gradient and an AdamW update of 23M weights every step, for
rows that stay unused (they only shrink under weight decay). `PointRowsEmbedding` keeps the
table frozen and trains a copy of the used rows, which gives the same outputs and the same
updates of those rows without the dense gradient and the 23M-weight update (at `large` on CPU,
the AdamW step went from 0.44-0.54 s to 0.30 s).

Checkpoints keep the usual format: `state_dict()` holds the full `weight`, with the trained
rows written into it, beside `trainable_rows`. LAVIS's runner saves trainable weights only,
so its checkpoints hold `trainable_rows`; a checkpoint with only `weight` (the released
RegionVLM weights, BLIP-2's stage-1 checkpoint) fills `trainable_rows` from it.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def point_text_token_ids(tokenizer) -> list[int]:
    """Sorted ids of every token point text can produce ("[", "]", "0".."100") and of the
    tokenizer's special tokens ([CLS], [SEP], [PAD], ...)."""
    every_value = "[" + " ".join(str(v) for v in range(101)) + "]"  # point text's integers are 0..100
    ids = tokenizer(every_value, add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id in ids:
        raise ValueError("the Q-Former vocabulary lacks some of the tokens '[', ']', 0-100 that point text uses")
    return sorted(set(ids) | set(tokenizer.all_special_ids))


class PointRowsEmbedding(nn.Embedding):
    """An `nn.Embedding` whose `weight` (V, D) is frozen except the rows `trainable_ids`,
    which live in the trainable `trainable_rows` (R, D).

    forward: token ids (...,) long -> embeddings (..., D), `trainable_rows` for trainable
    ids and `weight` rows for the others.
    """

    def __init__(self, embedding: nn.Embedding, trainable_ids: list[int]):
        super().__init__(
            embedding.num_embeddings, embedding.embedding_dim, padding_idx=embedding.padding_idx,
            _weight=embedding.weight.detach().clone(), _freeze=True,
            device=embedding.weight.device, dtype=embedding.weight.dtype,
        )
        ids = sorted(set(trainable_ids))
        if not ids or ids[0] < 0 or ids[-1] >= self.num_embeddings:
            raise ValueError(f"trainable ids must lie in [0, {self.num_embeddings}), got {list(trainable_ids)[:8]}...")
        ids = torch.tensor(ids, dtype=torch.long, device=self.weight.device)
        self.register_buffer("trainable_ids", ids, persistent=False)
        self.trainable_rows = nn.Parameter(self.weight.detach()[ids].clone())
        self.register_state_dict_post_hook(_write_rows_into_weight)
        self.register_load_state_dict_pre_hook(_rows_from_weight_if_absent)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        frozen = F.embedding(input_ids, self.weight, self.padding_idx)
        slot = torch.searchsorted(self.trainable_ids, input_ids).clamp(max=len(self.trainable_ids) - 1)
        is_trainable = self.trainable_ids[slot] == input_ids
        trained = F.embedding(slot, self.trainable_rows)
        return torch.where(is_trainable.unsqueeze(-1), trained, frozen)

    def full_weight(self) -> torch.Tensor:
        """(V, D) the table as the model uses it: `weight` with the trained rows written in."""
        return self.weight.detach().index_copy(0, self.trainable_ids, self.trainable_rows.detach())


def _write_rows_into_weight(module: PointRowsEmbedding, state_dict, prefix, local_metadata) -> None:
    state_dict[prefix + "weight"] = module.full_weight()


def _rows_from_weight_if_absent(module: PointRowsEmbedding, state_dict, prefix, *args) -> None:
    weight = state_dict.get(prefix + "weight")
    if weight is not None and prefix + "trainable_rows" not in state_dict and weight.shape == module.weight.shape:
        state_dict[prefix + "trainable_rows"] = weight[module.trainable_ids.to(weight.device)]

