"""Write the tokenizer and config files of the offline `tiny` model type.

The files under `assets/tiny/` are made by this script and committed, so the
package builds its test model with no download:

- `bert/`: a WordPiece vocabulary (special tokens, every integer 0-100, the
  brackets of point text, common English words, single letters and their `##`
  continuations so any lower-case word can be spelled) and a small `BertConfig`
  for the Q-Former;
- `t5/`: a SentencePiece BPE model trained on a small generated corpus (so the
  corpus words are single tokens and captions decode in few steps), its
  fast-tokenizer JSON, and a small `T5Config`;
- `opt/`: a byte-level BPE (GPT-2 style, as OPT's) trained with the `tokenizers`
  library on the same corpus, saved as `vocab.json` + `merges.txt` for OPT's
  (slow, as LAVIS loads it) `GPT2Tokenizer` with OPT's special tokens (`<s>` 0,
  `<pad>` 1, `</s>` 2 the BOS/EOS, `<unk>` 3), and a small `OPTConfig`.

Run `python -m lavis_regionvlm.assets.build_tiny_assets` to rebuild them.
Training the SentencePiece model and the byte-level BPE is deterministic for the same corpus.
"""
from __future__ import annotations

import argparse
import json
import string
import tempfile
from pathlib import Path

TINY_DIR = Path(__file__).resolve().parent / "tiny"

COLOURS = "red green blue yellow purple orange black white gray grey brown pink cyan magenta".split()
SHAPES = "circle disc square triangle rectangle shape object thing dot ball box star".split()
PLACES = "left right top bottom center centre middle corner upper lower side edge".split()
COMMON = (
    "a an the of in on at to and or with is are was be it this that these those what which "
    "who where when why how many much there here one two three four five six seven eight nine ten "
    "image picture photo region area part colour color size big small large tiny little next near "
    "above below behind front between inside outside background foreground person man woman child "
    "people dog cat car tree sky water road building table chair hand head hair shirt wearing "
    "holding sitting standing looking looks like has have answer question short yes no not "
    "let be why because so then first second third last other same different only some all "
    "very more most each both can do does did for from by as up down over under"
).split()
WORDS = sorted(set(COLOURS + SHAPES + PLACES + COMMON))
PUNCTUATION = list("[].,:;?!'\"()-/")


def bert_vocab() -> list[str]:
    """The WordPiece vocabulary, one token per entry, in id order."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    numbers = [str(i) for i in range(101)]
    letters = list(string.ascii_lowercase)
    continuations = ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens = specials + numbers + PUNCTUATION + letters + continuations + WORDS
    seen: set[str] = set()
    return [t for t in tokens if not (t in seen or seen.add(t))]


def bert_config(vocab_size: int) -> dict:
    """A small BERT config for the Q-Former (hidden 128, 2 layers)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }


def t5_config(vocab_size: int) -> dict:
    """A small T5 config (d_model 128, 2 encoder and 2 decoder layers)."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": vocab_size,
        "d_model": 128,
        "d_kv": 32,
        "d_ff": 256,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


def t5_corpus() -> list[str]:
    """Sentences that cover the words the synthetic data and tests use."""
    lines = []
    for colour in COLOURS:
        for shape in SHAPES:
            for place in PLACES:
                lines.append(f"a {colour} {shape} at the {place}, and the {shape} is {colour}.")
    lines.append(" ".join(WORDS))
    lines.append(" ".join(string.printable.split()))
    lines.append("Question: what colour is it? Short answer: red. Let [0] be the region. 1. 2. 3. 4.")
    return lines


def opt_config(vocab_size: int) -> dict:
    """A small OPT config (hidden 128, 2 decoder layers), OPT's special-token ids."""
    return {
        "architectures": ["OPTForCausalLM"],
        "model_type": "opt",
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "word_embed_proj_dim": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "ffn_dim": 256,
        "max_position_embeddings": 1024,  # room for the chat's default 512-token inputs and answers
        "activation_function": "relu",
        "do_layer_norm_before": True,
        "enable_bias": True,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "layerdrop": 0.0,
        "init_std": 0.02,
        "use_cache": True,
        "tie_word_embeddings": True,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
    }


OPT_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3, as OPT's vocabulary


def write_opt(out: Path, vocab_size: int = 600) -> None:
    """Train the byte-level BPE on `t5_corpus()` and write the GPT2Tokenizer files + config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=OPT_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(t5_corpus(), trainer=trainer)
    bpe.model.save(str(out))  # vocab.json, merges.txt
    merges = out / "merges.txt"
    lines = merges.read_text().splitlines()
    if not lines or not lines[0].startswith("#version"):
        merges.write_text("\n".join(["#version: 0.2"] + lines) + "\n")
    tokenizer = GPT2Tokenizer(
        vocab_file=str(out / "vocab.json"),
        merges_file=str(out / "merges.txt"),
        unk_token="<unk>",
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        add_bos_token=True,
        add_prefix_space=False,
    )
    tokenizer.save_pretrained(str(out))
    for extra in ("added_tokens.json",):
        if (out / extra).exists():
            (out / extra).unlink()
    (out / "config.json").write_text(json.dumps(opt_config(len(tokenizer)), indent=2) + "\n")


def write_bert(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    vocab = bert_vocab()
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "config.json").write_text(json.dumps(bert_config(len(vocab)), indent=2) + "\n")
    (out / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 128}, indent=2) + "\n"
    )


def write_t5(out: Path, vocab_size: int = 400) -> None:
    import sentencepiece as spm
    from transformers import T5TokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(t5_corpus()) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(out / "spiece"),
            vocab_size=vocab_size,
            model_type="bpe",
            character_coverage=1.0,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
    (out / "spiece.vocab").unlink()
    tokenizer = T5TokenizerFast(vocab_file=str(out / "spiece.model"), extra_ids=100)
    tokenizer.save_pretrained(str(out))
    (out / "config.json").write_text(json.dumps(t5_config(len(tokenizer)), indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_DIR)
    args = parser.parse_args()
    write_bert(args.out / "bert")
    write_t5(args.out / "t5")
    write_opt(args.out / "opt")
    print(f"wrote tiny tokenizer and config files to {args.out}")


if __name__ == "__main__":
    main()
