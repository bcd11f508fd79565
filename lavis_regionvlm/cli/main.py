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
    regionvlm projects [--out DIR [--force]]   (the LAVIS project YAMLs: list, or write into DIR)

Common options: --model (the registered model: blip2_t5_region, the default, or
blip2_opt_region, RegionVLM on BLIP-2 OPT), --model-type (default regionvlm_flant5xl for
blip2_t5_region, pretrain_opt2.7b for blip2_opt_region; `tiny` for a quick offline try),
--checkpoint PATH, --device, --seed, --num-points, --quantize, --json, --debug.
A region is `--region` (JSON text, or a path to a JSON file, in `Region.from_json`'s form) or
`--points` (point text, integers 0..100); repeat them for several regions (one batch).
No region means the whole image.

Errors are one line on stderr, `regionvlm COMMAND: error: ...`, never a traceback. Exit
codes: 0 done; 2 a bad argument or a bad input file (the message names the option);
1 it failed while running (a file it cannot write, out of memory, an unexpected error);
130 interrupted (Ctrl+C). `--debug` shows the traceback of an unexpected error instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import string
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import lavis_regionvlm.registration  # noqa: F401  (every plugin name and the YAML resolvers)
from lavis_regionvlm.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    generate_kwargs,
)
from lavis_regionvlm.demo.server import add_demo_arguments
from lavis_regionvlm.interactive.chat import LAYOUTS, RELEASED
from lavis_regionvlm.interactive.predictor import ASK_PROMPT
from lavis_regionvlm.projects.__main__ import add_arguments as add_project_arguments
from lavis_regionvlm.projects.__main__ import run as run_projects

DEFAULT_MODEL = "blip2_t5_region"
DEFAULT_MODEL_TYPE = "regionvlm_flant5xl"
DEFAULT_MODEL_TYPES = {"blip2_t5_region": DEFAULT_MODEL_TYPE, "blip2_opt_region": "pretrain_opt2.7b"}

_PREDICTORS: dict[tuple, Any] = {}  # loaded models, reused by in-process calls of main()


# ---------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), as every other error is."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int):
    """argparse type: an int >= minimum."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    return parse


def _positive_float(value: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return number


def _device_arg(value: str) -> str:
    """argparse type: a torch device that exists here (cpu, cuda, cuda:N, mps)."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {value!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{value!r}: no CUDA GPU is usable on this machine; use --device cpu")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"{value!r}: this machine has {count} CUDA GPU(s), cuda:0 .. cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{value!r}: Apple MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"device type {device.type!r} is not supported; use cpu, cuda, cuda:N or mps")
    return value


def _question_template(value: str) -> str:
    """argparse type: a prompt template with exactly one `{}`, where the question goes."""
    hint = 'write a literal brace as "{{" or "}}"'
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(value) if field is not None]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a template: {exc}; {hint}") from None
    if fields not in ([""], ["0"]):
        raise argparse.ArgumentTypeError(
            f"{value!r} must hold exactly one {{}} (where the question goes), found {len(fields)} "
            f"placeholder(s) {['{' + f + '}' for f in fields]}; {hint}")
    return value


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
    parser = _Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--debug", action="store_true",
                       help="on an unexpected error, show its traceback instead of one line")
    model.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"registered model name (default {DEFAULT_MODEL}; blip2_opt_region: BLIP-2 OPT)")
    model.add_argument("--model-type", default=None,
                       help=f"model type of --model (default {DEFAULT_MODEL_TYPE} for {DEFAULT_MODEL}, "
                            f"{DEFAULT_MODEL_TYPES['blip2_opt_region']} for blip2_opt_region; 'tiny' needs no files)")
    model.add_argument("--checkpoint", help="fine-tuned checkpoint (path or URL) to load")
    model.add_argument("--device", type=_device_arg, default=None,
                       help="cpu, cuda, cuda:1, mps (default: cuda when available); checked to exist here")
    model.add_argument("--seed", type=int, default=0, help="seed of the region point draws")
    model.add_argument("--num-points", type=int, default=None, help="K points per region (default: the model's)")
    model.add_argument("--quantize", choices=("floor", "round"), default=None,
                       help="point-text rounding (default: the model's)")

    common = argparse.ArgumentParser(add_help=False, parents=[model])
    common.add_argument("--image", required=True, help="image file")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument("--max-image-mp", type=_positive_float, default=100.0,
                        help="largest --image accepted, in megapixels (default 100), read from its header")

    regions = argparse.ArgumentParser(add_help=False)
    regions.add_argument("--region", dest="regions", action="append", type=_region_arg, default=[],
                         metavar="JSON", help='region JSON or a JSON file, e.g. \'{"box": [0.1, 0.2, 0.5, 0.9]}\'')
    regions.add_argument("--points", dest="regions", action="append", type=_points_arg,
                         metavar="TEXT", help='point text, e.g. "[32 64] [37 62]"')
    regions.add_argument("--max-mask-mp", type=_positive_float, default=64.0,
                         help="largest region mask (RLE size, polygons canvas) in megapixels (default 64), "
                              "checked before decoding")

    generation = argparse.ArgumentParser(add_help=False)
    generation.add_argument("--num-beams", type=_int_at_least(1), default=None, help="beam search width (>= 1)")
    generation.add_argument("--max-new-tokens", type=_int_at_least(1), default=None,
                            help="longest answer in tokens (>= 1)")

    caption = commands.add_parser("caption", parents=[common, regions, generation], help="describe regions")
    caption.add_argument("--prompt", default="", help='language-model text after the region (default "")')

    ask = commands.add_parser("ask", parents=[common, regions, generation], help="answer a question about regions")
    ask.add_argument("--question", required=True)
    ask.add_argument("--prompt", type=_question_template, default=ASK_PROMPT,
                     help='template with one "{}", where the question goes (default "{}": the raw question, '
                          'as released; ours: "Question: {} Answer:")')

    score = commands.add_parser("score", parents=[common, regions], help="LM loss of texts given regions")
    score.add_argument("--text", dest="texts", action="append", required=True, help="a candidate text (repeat)")
    score.add_argument("--prompt", default="", help='language-model text after the region (default "")')

    segment = commands.add_parser("segment", parents=[common], help="segment the object an expression refers to")
    segment.add_argument("--expression", required=True)
    source = segment.add_mutually_exclusive_group(required=True)
    source.add_argument("--proposals", help="proposal file: SAM records with COCO RLE `segmentation`")
    source.add_argument("--sam-config", help="YAML with `sam` and `generator` blocks (runs SAM)")
    segment.add_argument("--out", help="folder for mask.png, mask_rle.json, overlay.png (made if missing)")

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
    chat.add_argument("--layout", choices=LAYOUTS, default=RELEASED,
                      help="the language model's input layout: released (default: their multi-turn layout, answers not fed back) "
                           "or history (ours: every turn with its answer)")
    chat.add_argument("--no-feed-answers", action="store_true",
                      help="history layout: leave previous answers out of the prompt")
    chat.add_argument("--export", help="write the session JSON here at the end")
    chat.add_argument("--replay", help="replay a session JSON first (same image), then go on")

    demo = commands.add_parser("demo", parents=[model], help="the web demo (and its JSON API) on 127.0.0.1")
    add_demo_arguments(demo)
    commands.add_parser("reproduce", add_help=False,  # parsed by lavis_regionvlm.reproduce (see main)
                        help="the paper's evaluation tables beside its numbers (regionvlm reproduce --help)")

    projects = commands.add_parser("projects", help="list the LAVIS project YAMLs, or write them into --out")
    add_project_arguments(projects)
    projects.set_defaults(debug=False)
    return parser


# ---------------------------------------------------------------------- inputs


def read_region_arg(flag: str, value: str, position: int, max_mask_pixels: int | None = None):
    """One --region / --points value -> a Region (--region) or the point text as given
    (--points; `regions.read_region`), or CliError naming the argument. A mask larger than
    `max_mask_pixels` is refused before it is decoded."""
    from lavis_regionvlm.demo.limits import region_mask_size
    from lavis_regionvlm.regions import RegionError
    from lavis_regionvlm.regions.masks import check_mask_pixels
    from lavis_regionvlm.regions.region_input import read_region

    where = f"{flag} #{position + 1}"
    try:
        if flag == "--points":
            if value.strip().startswith("{"):
                raise CliError(f"{where}: --points takes point text '[x y] [x y] ...' (0..100); "
                               "for a JSON region use --region")
            return read_region(value, where)
        text = value.strip()
        if not text.startswith("{"):
            path = Path(value)
            if not path.is_file():
                raise CliError(f"{where}: expected a JSON object or a path to a JSON file, got {value!r:.80}"
                               " (for point text use --points)")
            text = path.read_text()
            where = f"{where} ({path})"
        size = region_mask_size(text)
        if size is not None and max_mask_pixels is not None:
            check_mask_pixels(*size, max_mask_pixels, "option --max-mask-mp")
        return read_region(text, where)
    except RegionError as exc:
        message = str(exc)
        raise CliError(message if message.startswith(where) else f"{where}: {message}") from None


def read_regions(args) -> list:
    max_pixels = int(args.max_mask_mp * 1e6)
    return [read_region_arg(flag, value, i, max_pixels) for i, (flag, value) in enumerate(args.regions or [])]


def read_image(path: str, max_megapixels: float | None = None):
    """--image -> RGB image (EXIF orientation applied), or CliError naming the file and, for an
    image over `max_megapixels`, the option --max-image-mp."""
    from PIL import Image

    from lavis_regionvlm.image_io import ImageLimits, load_image

    if Path(path).is_dir():
        raise CliError(f"--image: {path} is a folder, not an image file")
    limits = None if max_megapixels is None else ImageLimits(int(max_megapixels * 1e6), options="option --max-image-mp")
    try:
        return load_image(path, limits=limits)
    except FileNotFoundError:
        raise CliError(f"--image: no such file: {path}") from None
    except (ValueError, OSError, Image.DecompressionBombError) as exc:
        raise CliError(_about_file("--image", path, exc)) from None


def check_checkpoint(args) -> None:
    """--checkpoint names a URL or an existing file (checked before the model loads)."""
    from lavis_regionvlm.paths import resolve_path

    if not args.checkpoint:
        return
    try:
        path = resolve_path(args.checkpoint)
    except FileNotFoundError as exc:
        raise CliError(f"--checkpoint: {exc}") from None
    if path.lower().startswith(("http://", "https://")):
        return
    if Path(path).is_dir():
        raise CliError(f"--checkpoint: {path} is a folder; give the checkpoint file itself (e.g. checkpoint_best.pth)")
    if not Path(path).is_file():
        raise CliError(f"--checkpoint: no such file: {path}")


def load_predictor(args):
    """The predictor for the model options (loaded once per process and kept)."""
    import torch

    from lavis_regionvlm.interactive.predictor import RegionPredictor
    from lavis_regionvlm.models.checkpoints import CheckpointError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_type = args.model_type or DEFAULT_MODEL_TYPES.get(args.model)
    if model_type is None:
        raise CliError(f"--model {args.model}: give its --model-type")
    key = (args.model, model_type, device, args.checkpoint)
    if key not in _PREDICTORS:
        try:
            _PREDICTORS[key] = RegionPredictor.from_pretrained(model_type, device, args.checkpoint, name=args.model)
        except CheckpointError as exc:
            where = "--checkpoint" if args.checkpoint else f"model type {model_type!r}"
            raise CliError(f"{where}: {one_line(exc)}") from None
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot load model type {model_type!r} of {args.model}: {one_line(exc)}") from None
    try:
        return _PREDICTORS[key].with_settings(seed=args.seed, num_points=args.num_points, quantize=args.quantize)
    except ValueError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------------- commands


def _region_rows(predictor, regions: list) -> tuple[list, list[dict]]:
    """Regions to query (None for the whole image) and their JSON description."""
    from lavis_regionvlm.regions.region_input import region_json

    rows = regions or [None]
    described = [{"region": None if r is None else region_json(r), "point_text": predictor.region_text(r)}
                 for r in rows]
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


def check_segment(args, regions: list) -> None:
    """Read the proposal file or the SAM config and check --out, before the model loads.
    Sets `args.proposal_records` (list of records) or `args.sam_settings` (dict)."""
    from lavis_regionvlm.ris.expression import ris_expression

    try:
        ris_expression(args.expression)
    except ValueError as exc:
        raise CliError(f"--expression: {exc}") from None
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out: {args.out} is an existing file; segment writes mask.png, mask_rle.json "
                       "and overlay.png into a folder (give a folder, new or existing)")
    if args.proposals:
        args.proposal_records = read_proposal_file(args.proposals)
    else:
        args.sam_settings = read_sam_config(args.sam_config)


def read_proposal_file(path: str) -> list[dict]:
    """--proposals: the records of a proposal file, or CliError saying what is wrong with it."""
    from lavis_regionvlm.ris.proposal_cache import read_proposals

    if Path(path).is_dir():
        raise CliError(f"--proposals: {path} is a folder; give one image's proposal file (JSON)")
    if not Path(path).is_file():
        raise CliError(f"--proposals: no such file: {path}")
    try:
        return read_proposals(path)
    except (ValueError, OSError) as exc:  # JSON or record errors (a truncated file is invalid JSON)
        raise CliError(_about_file("--proposals", path, exc)) from None


def read_sam_config(path: str) -> dict:
    """--sam-config: the YAML's `sam` and `generator` blocks, or CliError saying what is wrong."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not Path(path).is_file():
        raise CliError(f"--sam-config: no such file: {path}")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise CliError(f"--sam-config {path}: not valid YAML: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, OmegaConfBaseException, ValueError, OSError) as exc:
        raise CliError(_about_file("--sam-config", path, exc)) from None
    example = "e.g. 'sam: {model_type: vit_h, checkpoint: sam_vit_h_4b8939.pth}' and an optional 'generator:' block"
    if not isinstance(config, dict) or not isinstance(config.get("sam"), dict) or "model_type" not in config["sam"]:
        raise CliError(f"--sam-config {path}: expected a 'sam' block with a 'model_type', {example}")
    if not isinstance(config.get("generator") or {}, dict):
        raise CliError(f"--sam-config {path}: 'generator' must be a block of SamAutomaticMaskGenerator options")
    return config


def cmd_segment(args, predictor, regions, out: TextIO) -> int:
    from lavis_regionvlm.ris.segment import save_result, sam_proposals

    if args.proposals:
        proposals, option, source = args.proposal_records, "--proposals", args.proposals
    else:
        try:  # SAM's own checks: model type, checkpoint file, generator options
            proposals = sam_proposals(predictor.image, args.sam_settings)
        except (ValueError, TypeError, OSError) as exc:
            raise CliError(_about_file("--sam-config", args.sam_config, exc)) from None
        option, source = "--sam-config", args.sam_config
    try:
        result = predictor.segment(args.expression, proposals)
    except ValueError as exc:  # proposals made for an image of another size
        raise CliError(_about_file(option, source, exc)) from None
    try:
        paths = save_result(result, predictor.image, args.out) if args.out else {}
    except OSError as exc:
        raise CliError(f"--out: cannot write into {args.out}: {one_line(exc)}", EXIT_FAILED) from None
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
    for attention_map, path in zip(maps, paths):
        picture = attention_map.overlay(image, alpha=args.alpha, points=attention_map.region_text != "")
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

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0..65535 (0: any free port), got {args.port}")
    try:
        check_demo_options(args)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    check_checkpoint(args)
    predictor = load_predictor(args)
    try:
        serve(predictor, args)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (YAML and torch messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _about_file(option: str, path: str, exc: BaseException) -> str:
    """`option path: message`, or `option: message` when the message names the path."""
    message = one_line(exc)
    return f"{option}: {message}" if str(path) in message else f"{option} {path}: {message}"


def _print_lines(texts: Sequence[str], out: TextIO) -> None:
    for i, text in enumerate(texts):
        print(f"[{i}] {text}" if len(texts) > 1 else text, file=out)


COMMANDS = {"caption": cmd_caption, "ask": cmd_ask, "score": cmd_score, "segment": cmd_segment,
            "attention": cmd_attention}
# Checks of a command's own arguments, run before the model loads (args, regions) -> None.
EARLY_CHECKS = {"attention": lambda args, regions: attention_paths(args, max(1, len(regions))),
                "segment": check_segment}


# ---------------------------------------------------------------------- entry point


def main(argv: Optional[Sequence[str]] = None, *, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Run the `regionvlm` command line; returns the exit code (0 ok, 1 failed, 2 bad
    arguments or inputs, 130 interrupted). Every error is one line on `stderr`; an
    unexpected one re-raises with --debug."""
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
    except SystemExit as exc:  # argparse printed the error (or --help)
        return int(exc.code or 0)
    try:
        return _run(args, stdin, stdout, stderr)
    except CliError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (the user gets one line; --debug shows the traceback)
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {_describe(exc)} (run with --debug for the traceback)", file=stderr)
        return EXIT_FAILED


def _run(args, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Check the inputs (cheap ones first), load the model, run the command."""
    if args.command == "demo":
        return run_demo(args)
    if args.command == "projects":
        return run_projects(args, stdout, stderr, prog=f"{PROG} projects")
    regions = read_regions(args) if hasattr(args, "regions") else []
    if args.command in EARLY_CHECKS:
        EARLY_CHECKS[args.command](args, regions)
    check_checkpoint(args)
    image = read_image(args.image, args.max_image_mp)
    predictor = load_predictor(args)
    predictor.set_image(image)
    if args.command == "chat":
        from lavis_regionvlm.cli.chat_loop import run_chat

        return run_chat(args, predictor, regions, stdin, stdout, stderr)
    return COMMANDS[args.command](args, predictor, regions, stdout)


def _describe(exc: Exception) -> str:
    """One line for an error no check anticipated: the message, with the type where the
    message alone says little (KeyError('sam') -> "KeyError: 'sam'")."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, (OSError, RuntimeError, ValueError)):
        return one_line(exc)
    return f"{type(exc).__name__}: {one_line(exc)}"
