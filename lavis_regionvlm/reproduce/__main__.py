"""`python -m lavis_regionvlm.reproduce`: the paper's evaluation tables beside the paper's numbers.

    python -m lavis_regionvlm.reproduce --data-root /data --checkpoint regionvlm.pth
        [--tables all | 1,2,...] [--out output/reproduce] [--nproc 8] [--device cuda]
        [--dry-run] [--options run.batch_size_eval=32 ...]

The data layout under --data-root is below (and in the README, "Reproduce the paper").
Exit codes: 0 every evaluation done, 1 some failed (the others still
ran; results.md lists them), 2 bad arguments or missing inputs (nothing was run).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from lavis_regionvlm.config_resolvers import register_resolvers
from lavis_regionvlm.projects import projects_dir
from lavis_regionvlm.reproduce import estimate
from lavis_regionvlm.reproduce.inputs import (README_SECTION, Inspection, Missing, check_model, check_sam,
                                              inspect)
from lavis_regionvlm.reproduce.paper import load_paper_tables, select_tables
from lavis_regionvlm.reproduce.plan import (Evaluation, Settings, evaluation_config, plan_evaluations,
                                            proposal_config)
from lavis_regionvlm.reproduce.report import build_results, markdown, settings_record, write_results
from lavis_regionvlm.reproduce.runner import Outcome, finished, make_proposals, run_evaluation

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_PROJECTS = projects_dir()  # the source checkout's, or the copy packaged into the wheel
RELEASED_MODEL_TYPE = "regionvlm_flant5xl"
BLIP2_MODEL_TYPE = "pretrain_flant5xl"  # BLIP-2 FlanT5-XL's weights, what the RegionVLM model starts from


class UsageError(Exception):
    """Bad arguments or missing inputs: reported on stderr, exit code 2."""


def data_layout() -> str:
    """The data layout paragraph of the package docstring (shown by --help)."""
    import lavis_regionvlm.reproduce as package

    return "The data root is" + package.__doc__.split("The data root is", 1)[1].rstrip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lavis_regionvlm.reproduce", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1] + "\n\n" + data_layout(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, type=Path, help="the data folder (layout: below)")
    parser.add_argument("--model-type", default=RELEASED_MODEL_TYPE,
                        help=f"blip2_t5_region model type (default {RELEASED_MODEL_TYPE}; tiny for a CPU try)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the fine-tuned checkpoint (default: $REGIONVLM_CHECKPOINT)")
    parser.add_argument("--baseline-model-type", default="auto",
                        help="model type of Table 4's red-circle and crop baselines; auto (default): "
                             f"{BLIP2_MODEL_TYPE} (BLIP-2, as in the paper) when --model-type is "
                             f"{RELEASED_MODEL_TYPE}, else --model-type with its checkpoint")
    parser.add_argument("--tables", default="all", help="'all' or paper table numbers, e.g. 1,4")
    parser.add_argument("--out", type=Path, default=Path("output/reproduce"),
                        help="results folder: one sub-folder per evaluation, results.json, results.md")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes per evaluation (torch.distributed.run; GPUs on CUDA)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available")
    parser.add_argument("--projects", type=Path, default=DEFAULT_PROJECTS,
                        help=f"folder of the project YAMLs used as templates (default {DEFAULT_PROJECTS})")
    parser.add_argument("--sam-config", type=Path, default=None,
                        help="proposal-job YAML used to make missing proposals "
                             "(default <projects>/ris_proposals_refcoco.yaml: SAM ViT-H)")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides for every evaluation config, e.g. run.batch_size_eval=32; "
                             "'datasets.*.' stands for the config's dataset")
    parser.add_argument("--dry-run", action="store_true", help="check the inputs and print the plan only")
    return parser


def say(message: str) -> None:
    print(f"[reproduce] {message}", flush=True)


def resolve_arguments(args: argparse.Namespace) -> Settings:
    """Check the arguments that need no data, fill defaults; UsageError says what is wrong."""
    if not args.data_root.is_dir():
        raise UsageError(f"--data-root {args.data_root} is not a folder")
    if args.nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {args.nproc}")
    if not args.projects.is_dir():
        raise UsageError(f"--projects {args.projects} is not a folder: the project YAMLs live in "
                         "projects/regionvlm of a source checkout")
    for option in args.options:
        if "=" not in option:
            raise UsageError(f"--options: expected KEY=VALUE, got {option!r}")
    if args.checkpoint is None and os.environ.get("REGIONVLM_CHECKPOINT"):
        args.checkpoint = Path(os.environ["REGIONVLM_CHECKPOINT"])
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.sam_config = args.sam_config or args.projects / "ris_proposals_refcoco.yaml"
    if args.baseline_model_type == "auto":
        args.baseline_model_type = BLIP2_MODEL_TYPE if args.model_type == RELEASED_MODEL_TYPE else args.model_type
    return Settings(data_root=args.data_root.resolve(), projects=args.projects, out=args.out.resolve(),
                    model_type=args.model_type, device=args.device,
                    checkpoint=args.checkpoint.resolve() if args.checkpoint else None,
                    options=tuple(args.options), baseline_model_type=args.baseline_model_type)


def proposal_jobs(plan: list[Evaluation], configs: dict[str, dict], inspections: dict[str, Inspection],
                  sam_config: Path, settings: Settings) -> dict[str, dict]:
    """{RIS dataset: proposal-job config} for the datasets with images lacking proposals."""
    splits: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for evaluation in plan:
        if evaluation.kind != "ris":
            continue
        first.setdefault(evaluation.dataset, evaluation.name)
        splits.setdefault(evaluation.dataset, set()).update(inspections[evaluation.name].proposals_todo)
    return {dataset: proposal_config(dataset, sorted(todo), configs[first[dataset]], sam_config, settings)
            for dataset, todo in splits.items() if todo}


def print_plan(plan: list[Evaluation], tables_of: dict[str, list[int]], inspections: dict[str, Inspection],
               jobs: dict[str, dict], configs: dict[str, dict], settings: Settings, nproc: int) -> None:
    device = f"{settings.device} x {nproc}" if nproc > 1 else settings.device
    say(f"plan: {len(plan)} evaluations of model type {settings.model_type} on {device}, results in {settings.out}")
    total, rough = 0.0, False
    for dataset, config in jobs.items():
        todo = {n for e in plan if e.dataset == dataset for names in inspections[e.name].proposals_todo.values()
                for n in names}
        seconds = estimate.seconds("proposals", len(todo), settings.model_type, settings.device, nproc)
        total += seconds
        rough = True
        say(f"  proposals {dataset:<10} {len(todo)} images without proposals -> {config['output_dir']}"
            f"  ~{estimate.format_duration(seconds)} (rough)")
    for evaluation in plan:
        size = ", ".join(f"{v} {k}" for k, v in inspections[evaluation.name].size.items())
        tables = ",".join(map(str, tables_of[evaluation.name]))
        if finished(settings.out / evaluation.name, configs[evaluation.name]) is not None:
            say(f"  {evaluation.name:<28} table {tables:<6} {size}: finished earlier, not run again")
            continue
        units = inspections[evaluation.name].size.get(estimate.UNIT[evaluation.kind], 0)
        seconds = estimate.seconds(evaluation.kind, units, settings.model_type, settings.device, nproc)
        source = "cost model" if estimate.is_cost_model(evaluation.kind, settings.model_type, settings.device) else "rough"
        rough = rough or source == "rough"
        total += seconds
        variant = " ".join(f"{k}={v}" for k, v in evaluation.run.items())
        if configs[evaluation.name]["model"]["model_type"] != settings.model_type:
            variant += f" model_type={configs[evaluation.name]['model']['model_type']}"
        say(f"  {evaluation.name:<28} table {tables:<6} {'/'.join(evaluation.splits)} {variant} ({size})"
            f"  ~{estimate.format_duration(seconds)} ({source})")
    say(f"estimated total: ~{estimate.format_duration(total)}" + (" (rough: per-item rates, see "
        "lavis_regionvlm/reproduce/estimate.py)" if rough else ""))


def report_missing(missing: list[Missing], out: Callable[[str], None]) -> None:
    seen = []
    for item in missing:
        if item not in seen:
            seen.append(item)
    for item in seen:
        out(item.line())
    out(f"{len(seen)} input(s) missing: nothing was run. The data layout: {README_SECTION}, "
        "or python -m lavis_regionvlm.reproduce --help.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage and the error (or --help)
        return int(exc.code or 0)
    err = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    register_resolvers()  # the project YAMLs use ${regionvlm_data:...} and ${regionvlm_cwd:...}
    try:
        settings = resolve_arguments(args)
        paper = load_paper_tables()
        chosen = [paper[n] for n in select_tables(args.tables, paper)]
        plan = plan_evaluations(chosen)
        configs = {e.name: evaluation_config(e, settings) for e in plan}
        inspections = {e.name: inspect(e, configs[e.name]) for e in plan}
        jobs = proposal_jobs(plan, configs, inspections, args.sam_config, settings)
    except (UsageError, ValueError, FileNotFoundError) as exc:
        err(f"reproduce: error: {exc}")
        return EXIT_USAGE
    missing = check_model(settings.model_type, settings.checkpoint,
                          needs_checkpoint=settings.model_type == RELEASED_MODEL_TYPE)
    missing += [m for e in plan for m in inspections[e.name].missing]
    missing += [m for config in jobs.values() for m in check_sam(config)]
    if missing:
        report_missing(missing, err)
        return EXIT_USAGE
    tables_of = {e.name: [t.number for t in chosen if any(m.evaluation == e.name for m in t.measures)] for e in plan}
    print_plan(plan, tables_of, inspections, jobs, configs, settings, args.nproc)
    if args.dry_run:
        return EXIT_OK

    try:
        settings.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err(f"reproduce: error: --out {settings.out}: {exc}")
        return EXIT_USAGE
    # SIGTERM ends the command like Ctrl-C: the running child is stopped first (runner.run_logged)
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run_plan(args, settings, chosen, plan, configs, inspections, jobs)
    except KeyboardInterrupt:
        err("reproduce: interrupted; run the same command again to go on (finished evaluations are kept)")
        return 130


def run_plan(args: argparse.Namespace, settings: Settings, chosen: list, plan: list[Evaluation],
             configs: dict[str, dict], inspections: dict[str, Inspection], jobs: dict[str, dict]) -> int:
    """Make the missing proposals, run the evaluations, write and print the results."""
    outcomes: dict[str, Outcome] = {}
    failed_datasets = {}
    for dataset, config in jobs.items():
        outcome = make_proposals(dataset.replace("+", "_plus"), config, settings.out, args.nproc,
                                 settings.device, say)
        if outcome.status != "done":
            say(f"FAILED {outcome.name}: {outcome.message}")
            failed_datasets[dataset] = outcome.message
    for evaluation in plan:
        if evaluation.dataset in failed_datasets:
            outcomes[evaluation.name] = Outcome(evaluation.name, "failed",
                                                message=f"proposals failed: {failed_datasets[evaluation.dataset]}")
        else:
            outcomes[evaluation.name] = run_evaluation(evaluation, configs[evaluation.name],
                                                       inspections[evaluation.name], settings.out, args.nproc, say)
        if outcomes[evaluation.name].status != "done":
            say(f"FAILED {evaluation.name}: {outcomes[evaluation.name].message}")
        write_results(build_results(chosen, outcomes, settings_record(args)), settings.out)
    results = build_results(chosen, outcomes, settings_record(args))
    json_path, md_path = write_results(results, settings.out)
    print(markdown(results), flush=True)
    say(f"wrote {json_path} and {md_path}")
    return EXIT_OK if all(o.status == "done" for o in outcomes.values()) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
