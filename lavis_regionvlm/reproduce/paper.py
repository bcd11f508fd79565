"""The paper's published numbers (`configs/paper_tables.yaml`) and the measures that reproduce them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import OmegaConf

from lavis_regionvlm.paths import config_path

PAPER_TABLES = config_path("paper_tables.yaml")


@dataclass(frozen=True)
class Measure:
    """One number of ours: `metric` of `split` in the evaluation named `evaluation`."""

    evaluation: str
    split: str
    metric: str

    @classmethod
    def parse(cls, text: str) -> "Measure":
        """`"ris_refcoco:val:mIoU"` -> Measure("ris_refcoco", "val", "mIoU")."""
        parts = str(text).split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{PAPER_TABLES}: a measure is '<evaluation>:<split>:<metric>', got {text!r}")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.evaluation}:{self.split}:{self.metric}"


@dataclass(frozen=True)
class Row:
    """A table row: the paper's numbers (None = "-") and, for our method's rows, the measures."""

    label: str
    paper: tuple[Optional[float], ...]
    ours: Optional[tuple[Measure, ...]]


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    note: str = ""

    @property
    def measures(self) -> list[Measure]:
        """Every measure of ours the table shows, in order."""
        return [m for row in self.rows if row.ours for m in row.ours]


def load_paper_tables(path: str = PAPER_TABLES) -> dict[int, PaperTable]:
    """{table number: PaperTable}; every row must have one value per column."""
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    tables = {}
    for number, table in data["tables"].items():
        columns = tuple(table["columns"])
        rows = []
        for row in table["rows"]:
            paper = tuple(None if v is None else float(v) for v in row["paper"])
            ours = tuple(Measure.parse(m) for m in row["ours"]) if row.get("ours") else None
            if len(paper) != len(columns) or (ours is not None and len(ours) != len(columns)):
                raise ValueError(f"{path}: table {number}, row {row['label']!r}: "
                                 f"expected {len(columns)} values per list")
            rows.append(Row(row["label"], paper, ours))
        tables[int(number)] = PaperTable(int(number), table["title"], columns, tuple(rows), table.get("note", ""))
    return tables


def select_tables(spec: str, tables: dict[int, PaperTable]) -> list[int]:
    """`"all"` -> every table with a row of ours; `"1,4"` -> [1, 4]. ValueError names a bad entry."""
    reproducible = sorted(n for n, t in tables.items() if t.measures)
    if spec.strip().lower() == "all":
        return reproducible
    chosen = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in reproducible:
            raise ValueError(f"--tables: {part!r} is not a table this command reproduces "
                             f"(choose from {', '.join(map(str, reproducible))}, or 'all')")
        if int(part) not in chosen:
            chosen.append(int(part))
    return chosen
