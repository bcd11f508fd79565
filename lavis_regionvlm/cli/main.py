"""`regionvlm`: ask a RegionVLM model about regions of an image from the command line.

    regionvlm caption --image img.png --region '{"points": [[0.3, 0.6], [0.35, 0.62]]}'
    regionvlm caption --image img.png --points "[32 64] [37 62]" --points "[70 20]" --json
    regionvlm ask     --image img.png --points "[32 64] [37 62]" --question "what colour is it?"
    regionvlm score   --image img.png --region box.json --text "a dog" --text "a cat"
    regionvlm segment --image img.png --expression "the dog on the left" --proposals props.json --out out/
    regionvlm attention --image img.png --points "[32 64] [37 62]" --out attention.png [--layers last]
    regionvlm attention --image img.png --points "[32 64]" --points "[70 20]" --out maps/ --json
    regionvlm chat    --image img.png [--points "[32 64]"] < questions.txt
    regionvlm demo    [--port 7860] [--sam-type vit_h --sam-checkpoint sam_vit_h_4b8939.pth]

Common options: --model-type (default regionvlm_flant5xl; `tiny` for a quick offline try),
--checkpoint PATH, --device, --seed, --num-points, --quantize, --json.
A region is `--region` (JSON text, or a path to a JSON file, in `Region.from_json`'s form) or
`--points` (point text, integers 0..100); repeat them for several regions (one batch).
No region means the whole image. Errors go to stderr; bad arguments or inputs exit with 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

from lavis_regionvlm.demo.server import add_demo_arguments

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_MODEL_TYPE = "regionvlm_flant5xl"
PROG = "regionvlm"

_PREDICTORS: dict[tuple, Any] = {}  # loaded models, reused by in-process calls of main()


class CliError(Exception):
    """An error to report on stderr with an exit code (2: bad arguments or inputs)."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------- arguments


def _region_arg(value: str) -> tuple[str, str]:
    return ("--region", value)


def _points_arg(value: str) -> tuple[str, str]:
    return ("--points", value)


def _layers_arg(value: str):
    from lavis_regionvlm.interactive.attention import parse_layers

    try:
        return parse_layers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model-type", default=DEFAULT_MODEL_TYPE,
                       help=f"blip2_t5_region model type (default {DEFAULT_MODEL_TYPE}; 'tiny' needs no files)")
    model.add_argument("--checkpoint", help="fine-tuned checkpoint (path or URL) to load")
    model.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    model.add_argument("--seed", type=int, default=0, help="seed of the region point draws")
    model.add_argument("--num-points", type=int, default=None, help="K points per region (default: the model's)")
    model.add_argument("--quantize", choices=("floor", "round"), default=None,
                       help="point-text rounding (default: the model's)")

    common = argparse.ArgumentParser(add_help=False, parents=[model])
    common.add_argument("--image", required=True, help="image file")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")

    regions = argparse.ArgumentParser(add_help=False)
    regions.add_argument("--region", dest="regions", action="append", type=_region_arg, default=[],
                         metavar="JSON", help='region JSON or a JSON file, e.g. \'{"box": [0.1, 0.2, 0.5, 0.9]}\'')
    regions.add_argument("--points", dest="regions", action="append", type=_points_arg,
                         metavar="TEXT", help='point text, e.g. "[32 64] [37 62]"')

    generation = argparse.ArgumentParser(add_help=False)
    generation.add_argument("--num-beams", type=int, default=None)
    generation.add_argument("--max-new-tokens", type=int, default=None)

    caption = commands.add_parser("caption", parents=[common, regions, generation], help="describe regions")
    caption.add_argument("--prompt", default="", help='T5 text after the region (default "")')

    ask = commands.add_parser("ask", parents=[common, regions, generation], help="answer a question about regions")
    ask.add_argument("--question", required=True)
    ask.add_argument("--prompt", default="Question: {} Answer:", help='template, "{}" is the question')

    score = commands.add_parser("score", parents=[common, regions], help="LM loss of texts given regions")
    score.add_argument("--text", dest="texts", action="append", required=True, help="a candidate text (repeat)")
    score.add_argument("--prompt", default="", help='T5 text after the region (default "")')

    segment = commands.add_parser("segment", parents=[common], help="segment the object an expression refers to")
    segment.add_argument("--expression", required=True)
    source = segment.add_mutually_exclusive_group(required=True)
    source.add_argument("--proposals", help="proposal file: SAM records with COCO RLE `segmentation`")
    source.add_argument("--sam-config", help="YAML with `sam` and `generator` blocks (runs SAM)")
    segment.add_argument("--out", help="folder for mask.png, mask_rle.json, overlay.png")

    attention = commands.add_parser(
        "attention", parents=[common, regions],
        help="heat map of where the Q-Former looks for each region")
    attention.add_argument("--out", required=True, metavar="PATH",
                           help="PNG file for one region, or an existing folder (one attention_<i>.png per region)")
    attention.add_argument("--layers", type=_layers_arg, default="all",
                           help="cross-attention layers to average: all (default), first, last, or indices '0,2'")
    attention.add_argument("--alpha", type=float, default=0.6, help="heat-map opacity at the peak, 0..1 (default 0.6)")

    chat = commands.add_parser("chat", parents=[common, regions, generation],
                               help="a conversation read from stdin (works with piped input)")
    chat.add_argument("--max-input-tokens", type=int, default=512)
    chat.add_argument("--no-feed-answers", action="store_true", help="leave previous answers out of the prompt")
    chat.add_argument("--export", help="write the session JSON here at the end")
    chat.add_argument("--replay", help="replay a session JSON first (same image), then go on")

    demo = commands.add_parser("demo", parents=[model], help="the web demo (and its JSON API) on 127.0.0.1")
    add_demo_arguments(demo)
    commands.add_parser("reproduce", add_help=False,  # parsed by lavis_regionvlm.reproduce (see main)
                        help="the paper's evaluation tables beside its numbers (regionvlm reproduce --help)")
    return parser


# ---------------------------------------------------------------------- inputs


def read_region_arg(flag: str, value: str, position: int):
    """One --region / --points value -> Region, or CliError naming the argument."""
    from lavis_regionvlm.interactive.regions_input import as_region, parse_points
    from lavis_regionvlm.regions import RegionError

    where = f"{flag} #{position + 1}"
    try:
        if flag == "--points":
            return parse_points(value)
        text = value.strip()
        if not text.startswith("{"):
            path = Path(value)
            if not path.is_file():
                raise CliError(f"{where}: expected a JSON object or a path to a JSON file, got {value!r:.80}"
                               " (for point text use --points)")
            text = path.read_text()
            where = f"{where} ({path})"
        return as_region(text, where)
    except RegionError as exc:
        message = str(exc)
        raise CliError(message if message.startswith(where) else f"{where}: {message}") from None


def read_regions(args) -> list:
    return [read_region_arg(flag, value, i) for i, (flag, value) in enumerate(args.regions or [])]


def read_image(path: str):
    from lavis_regionvlm.interactive.predictor import load_image

    try:
        return load_image(path)
    except FileNotFoundError:
        raise CliError(f"--image: no such file: {path}") from None
    except (ValueError, OSError) as exc:
        raise CliError(f"--image: {exc}") from None


def load_predictor(args):
    """The predictor for the model options (loaded once per process and kept)."""
    import torch

    from lavis_regionvlm.interactive.predictor import RegionPredictor

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (args.model_type, device, args.checkpoint)
    if key not in _PREDICTORS:
        try:
            _PREDICTORS[key] = RegionPredictor.from_pretrained(args.model_type, device, args.checkpoint)
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot load model type {args.model_type!r}: {exc}") from None
    try:
        return _PREDICTORS[key].with_settings(seed=args.seed, num_points=args.num_points, quantize=args.quantize)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def generate_kwargs(args) -> dict:
    kwargs = {}
    if getattr(args, "num_beams", None) is not None:
        kwargs["num_beams"] = args.num_beams
    if getattr(args, "max_new_tokens", None) is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    return kwargs


# ---------------------------------------------------------------------- commands


def _region_rows(predictor, regions: list) -> tuple[list, list[dict]]:
    """Regions to query (None for the whole image) and their JSON description."""
    rows = regions or [None]
    described = [{"region": None if r is None else r.to_json(), "point_text": predictor.region_text(r)} for r in rows]
    return rows, described


def _header(args, predictor) -> dict:
    return {"image": args.image, "image_sha256": predictor.image_sha256, "settings": predictor.settings}


def cmd_caption(args, predictor, regions, out: TextIO) -> int:
    rows, described = _region_rows(predictor, regions)
    captions = predictor.caption(rows, prompt=args.prompt, **generate_kwargs(args))
    if args.json:
        results = [{**d, "caption": c} for d, c in zip(described, captions)]
        print(json.dumps({**_header(args, predictor), "results": results}), file=out)
    else:
        _print_lines(captions, out)
    return EXIT_OK


def cmd_ask(args, predictor, regions, out: TextIO) -> int:
    rows, described = _region_rows(predictor, regions)
    answers = predictor.ask(args.question, rows, prompt=args.prompt, **generate_kwargs(args))
    if args.json:
        results = [{**d, "answer": a} for d, a in zip(described, answers)]
        print(json.dumps({**_header(args, predictor), "question": args.question, "results": results}), file=out)
    else:
        _print_lines(answers, out)
    return EXIT_OK


def cmd_score(args, predictor, regions, out: TextIO) -> int:
    rows, described = _region_rows(predictor, regions)
    losses = predictor.score(args.texts, rows, prompt=args.prompt).tolist()
    results = []
    for d, row in zip(described, losses):
        best = min(range(len(row)), key=row.__getitem__)
        results.append({**d, "scores": [{"text": t, "loss": l} for t, l in zip(args.texts, row)],
                        "best": args.texts[best]})
    if args.json:
        print(json.dumps({**_header(args, predictor), "results": results}), file=out)
    else:
        for i, result in enumerate(results):
            if len(results) > 1:
                print(f"region [{i}]:", file=out)
            for item in result["scores"]:
                print(f"{item['loss']:.4f}\t{item['text']}", file=out)
    return EXIT_OK


def cmd_segment(args, predictor, regions, out: TextIO) -> int:
    from lavis_regionvlm.ris.segment import save_result

    if args.proposals:
        if not Path(args.proposals).is_file():
            raise CliError(f"--proposals: no such file: {args.proposals}")
        result = predictor.segment(args.expression, args.proposals)
    else:
        from omegaconf import OmegaConf

        from lavis_regionvlm.ris.segment import sam_proposals

        if not Path(args.sam_config).is_file():
            raise CliError(f"--sam-config: no such file: {args.sam_config}")
        config = OmegaConf.to_container(OmegaConf.load(args.sam_config), resolve=True)
        result = predictor.segment(args.expression, sam_proposals(predictor.image, config))
    paths = save_result(result, predictor.image, args.out) if args.out else {}
    if args.json:
        print(json.dumps({**_header(args, predictor), "expression": args.expression, **result.to_json(),
                          "outputs": {k: str(v) for k, v in paths.items()}}), file=out)
    else:
        if result.mask is None:
            print("no proposal passed the filter: no mask", file=out)
        else:
            best = result.proposal_ids.index(result.proposal)
            print(f"proposal {result.proposal} (loss {result.scores[best]:.4f}, "
                  f"{len(result.proposal_ids)} scored, area {int(result.mask.sum())} px)", file=out)
        for name, path in paths.items():
            print(f"{name}: {path}", file=out)
    return EXIT_OK


def attention_paths(args, count: int) -> list[Path]:
    """Where `attention` writes its PNGs: --out itself for one region (a .png path in an
    existing folder, or an existing folder: attention_0.png in it), else one
    attention_<i>.png per region in --out, which must be an existing folder."""
    out = Path(args.out)
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha must be in [0, 1], got {args.alpha}")
    if out.is_dir():
        return [out / f"attention_{i}.png" for i in range(count)]
    if count > 1:
        raise CliError(f"--out: {count} regions write one PNG each into a folder, and {args.out} "
                       "is not an existing folder (create it, or give one region)")
    if out.suffix.lower() != ".png":
        raise CliError(f"--out: expected a .png file or an existing folder, got {args.out}")
    if not out.parent.is_dir():
        raise CliError(f"--out: no such folder: {out.parent}")
    return [out]


def cmd_attention(args, predictor, regions, out: TextIO) -> int:
    rows, described = _region_rows(predictor, regions)
    paths = attention_paths(args, len(rows))
    try:
        maps = predictor.attention_map(rows, layers=args.layers)
    except ValueError as exc:  # a layer without cross-attention
        raise CliError(f"--layers: {exc}") from None
    image = predictor.image
    for attention_map, region, path in zip(maps, rows, paths):
        picture = attention_map.overlay(image, alpha=args.alpha, points=region is not None)
        try:
            picture.save(path, format="PNG")
        except OSError as exc:
            raise CliError(f"--out: cannot write {path}: {exc}", EXIT_FAILED) from None
    if args.json:
        results = [{**d, "path": str(p), **{k: v for k, v in m.to_json().items() if k != "region_text"}}
                   for d, p, m in zip(described, paths, maps)]
        print(json.dumps({**_header(args, predictor), "results": results}), file=out)
    else:
        for path in paths:
            print(path, file=out)
    return EXIT_OK


def run_demo(args) -> int:
    """Load the model (and SAM), then serve the demo until interrupted."""
    from lavis_regionvlm.demo.server import check_demo_options, serve

    try:
        check_demo_options(args)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    predictor = load_predictor(args)
    try:
        serve(predictor, args)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _print_lines(texts: Sequence[str], out: TextIO) -> None:
    for i, text in enumerate(texts):
        print(f"[{i}] {text}" if len(texts) > 1 else text, file=out)


COMMANDS = {"caption": cmd_caption, "ask": cmd_ask, "score": cmd_score, "segment": cmd_segment,
            "attention": cmd_attention}
# Checks of a command's own arguments, run before the model loads (args, regions) -> None.
EARLY_CHECKS = {"attention": lambda args, regions: attention_paths(args, max(1, len(regions)))}


# ---------------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None, *, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Run the `regionvlm` command line; returns the exit code (0 ok, 1 failed, 2 bad input)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:  # its own command line: python -m lavis_regionvlm.reproduce
        from lavis_regionvlm.reproduce.__main__ import main as reproduce

        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            return reproduce(argv[1:])
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error (or --help)
        return int(exc.code or 0)
    try:
        if args.command == "demo":
            return run_demo(args)
        regions = read_regions(args) if hasattr(args, "regions") else []
        if args.command in EARLY_CHECKS:
            EARLY_CHECKS[args.command](args, regions)
        image = read_image(args.image)
        predictor = load_predictor(args)
        predictor.set_image(image)
        if args.command == "chat":
            from lavis_regionvlm.cli.chat_loop import run_chat

            return run_chat(args, predictor, regions, stdin, stdout, stderr)
        return COMMANDS[args.command](args, predictor, regions, stdout)
    except CliError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=stderr)
        return exc.code
