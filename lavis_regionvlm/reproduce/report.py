"""Lay our numbers out as the paper's tables, each beside the published one, with the difference.

`results.json`:
    {"settings": {...}, "evaluations": {name: {"status", "metrics", "seconds", "message"}},
     "tables": {"<n>": {"title", "columns", "note", "rows": [
         {"label", "cells": [{"column", "paper", "ours", "diff", "measure"}]}]}}}
`ours` is a number, null (not run yet, or failed), or a string saying why it is absent
(e.g. "skipped: java is not on PATH" for SPICE); `diff` = ours - paper when both are numbers.

`results.md`: per table, the paper's comparison rows, then for each row of ours three rows:
"<label> (paper)", "<label> (ours)", "<label> (ours - paper)".
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from lavis_regionvlm.reproduce.paper import Measure, PaperTable
from lavis_regionvlm.reproduce.runner import Outcome
from lavis_regionvlm.ris.proposal_cache import write_json_atomic

Value = Union[float, str, None]


def our_value(measure: Measure, outcomes: dict[str, Outcome]) -> Value:
    """The number of a measure, None when its evaluation has no metrics, or an explanation."""
    outcome = outcomes.get(measure.evaluation)
    if outcome is None or outcome.status != "done":
        return None
    value = outcome.metrics.get(measure.split, {}).get(measure.metric)
    if value is None:
        return f"not reported ({measure.metric})"
    return value if isinstance(value, str) else float(value)


def table_results(table: PaperTable, outcomes: dict[str, Outcome]) -> dict:
    rows = []
    for row in table.rows:
        cells = []
        for index, column in enumerate(table.columns):
            paper = row.paper[index]
            measure = row.ours[index] if row.ours else None
            ours = our_value(measure, outcomes) if measure else None
            diff = ours - paper if isinstance(ours, float) and paper is not None else None
            cells.append({"column": column, "paper": paper, "ours": ours, "diff": diff,
                          "measure": str(measure) if measure else None})
        rows.append({"label": row.label, "ours_row": row.ours is not None, "cells": cells})
    return {"title": table.title, "columns": list(table.columns), "note": table.note, "rows": rows}


def build_results(tables: list[PaperTable], outcomes: dict[str, Outcome], settings: dict) -> dict:
    return {
        "settings": settings,
        "evaluations": {name: {"status": o.status, "metrics": o.metrics, "seconds": o.seconds,
                               "message": o.message} for name, o in outcomes.items()},
        "tables": {str(t.number): table_results(t, outcomes) for t in tables},
    }


def _number(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _ours(value: Value) -> str:
    if value is None:
        return "not run"
    return value if isinstance(value, str) else f"{value:.2f}"


def markdown(results: dict) -> str:
    """results.md (see the module docstring)."""
    settings = results["settings"]
    lines = ["# RegionVLM: our evaluation beside the paper's numbers", "",
             f"Model type `{settings['model_type']}`, checkpoint `{settings['checkpoint']}` "
             f"(Table 4's baselines: `{settings.get('baseline_model_type') or settings['model_type']}`), "
             f"data root `{settings['data_root']}`, device `{settings['device']}`. "
             "Paper: Lee, Chun, Yun, NAACL 2024.", ""]
    for number, table in results["tables"].items():
        lines += [f"## Table {number}: {table['title']}", "",
                  "| | " + " | ".join(table["columns"]) + " |",
                  "| --- |" + " --- |" * len(table["columns"])]
        for row in table["rows"]:
            cells = row["cells"]
            if not row["ours_row"]:
                lines.append(f"| {row['label']} (paper) | " + " | ".join(_number(c["paper"]) for c in cells) + " |")
                continue
            lines.append(f"| {row['label']} (paper) | " + " | ".join(_number(c["paper"]) for c in cells) + " |")
            lines.append(f"| **{row['label']} (ours)** | " + " | ".join(_ours(c["ours"]) for c in cells) + " |")
            lines.append(f"| {row['label']} (ours - paper) | "
                         + " | ".join(_number(c["diff"], signed=True) for c in cells) + " |")
        if table["note"]:
            lines += ["", table["note"]]
        lines.append("")
    failed = {n: e for n, e in results["evaluations"].items() if e["status"] != "done"}
    if failed:
        lines += ["## Not finished", ""] + [f"- `{n}`: {e['status']}: {e['message']}" for n, e in failed.items()] + [""]
    return "\n".join(lines)


def write_results(results: dict, out: Path) -> tuple[Path, Path]:
    """`<out>/results.json` and `<out>/results.md`, each written atomically."""
    json_path, md_path = out / "results.json", out / "results.md"
    write_json_atomic(json_path, results)
    temp = md_path.with_suffix(".md.tmp")
    temp.write_text(markdown(results))
    temp.replace(md_path)
    return json_path, md_path


def settings_record(args: Any) -> dict:
    return {"model_type": args.model_type, "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "baseline_model_type": args.baseline_model_type,
            "data_root": str(args.data_root), "device": args.device, "nproc": args.nproc,
            "tables": args.tables, "options": list(args.options or [])}
