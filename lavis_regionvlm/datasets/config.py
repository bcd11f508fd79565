"""Reading the dataset configs, with errors that name the config key and the path."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from lavis_regionvlm.paths import resolve_path
from lavis_regionvlm.regions import QUANTIZE_MODES

TOKENS_PER_POINT = 4  # "[", x, y, "]": each number 0-100 is one bert-base-uncased token
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
EPOCH_UNITS = ("image", "phrase")


class ConfigError(ValueError):
    """A dataset config that cannot be used: a missing key, a bad value, a missing file."""


@dataclass(frozen=True)
class SamplingConfig:
    """How a region becomes point text (the `sampling` block of a region dataset config).

    num_points: K, points per region.
    point_quantize: "floor" (int(v * 100), the released checkpoint) or "round" (the paper).
    seed: with the epoch and the sample index, fixes the points and the crop of a sample.
    region_max_len: the Q-Former text limit in BERT tokens ([CLS] and [SEP] included), or None.
        With a limit, the text holds only the whole points that fit, (limit - 2) // 4; None
        writes all K and leaves truncation to the model (the released behaviour: 32 tokens
        let 7.5 of 10 points through).
    empty_points: write "" instead of the points for every region sample: the model then
        cannot tell which region is meant (the no-points ablation of the paper's Table 8).
    epoch_unit: what one training epoch visits once. "image" (as released): each image record
        (a narrative, a Visual Genome image) once, with one of its phrases / regions drawn at
        random each epoch. "phrase" (ours): every phrase and region once. Val/test splits
        always hold every phrase.
    stored_points: as released, every region stands for this many stored points, and each
        sample draws K of them (a sorted random sample; when fewer than K, first upsampled by
        the released index rule) after the crop, which keeps all of them: a narrative phrase's
        trace points repeated or subsampled to this count by the index rule, a Visual Genome
        box's points drawn uniformly ONCE (fixed by the seed and the box, the same every epoch).
        null (ours): K points drawn from the region itself each time (a phrase's stored trace
        points, upsampled by rounding when fewer than K; fresh uniform points in a box), then
        the crop keeps those K.
    """

    num_points: int = 10
    point_quantize: str = "floor"
    seed: int = 0
    region_max_len: Optional[int] = None
    empty_points: bool = False
    epoch_unit: str = "image"
    stored_points: Optional[int] = 20

    def __post_init__(self) -> None:
        for name in ("num_points", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "num_points" else 0):
                raise ConfigError(f"sampling.{name} must be an int >= {1 if name == 'num_points' else 0}, got {value!r}")
        if self.point_quantize not in QUANTIZE_MODES:
            raise ConfigError(f"sampling.point_quantize must be one of {QUANTIZE_MODES}, got {self.point_quantize!r}")
        if self.epoch_unit not in EPOCH_UNITS:
            raise ConfigError(f"sampling.epoch_unit must be one of {EPOCH_UNITS}, got {self.epoch_unit!r}")
        stored = self.stored_points
        if stored is not None and (isinstance(stored, bool) or not isinstance(stored, int) or stored < 1):
            raise ConfigError(f"sampling.stored_points must be null or an int >= 1, got {stored!r}")
        if not isinstance(self.empty_points, bool):
            raise ConfigError(f"sampling.empty_points must be true or false, got {self.empty_points!r}")
        limit = self.region_max_len
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < SPECIAL_TOKENS + TOKENS_PER_POINT):
            raise ConfigError(
                f"sampling.region_max_len must be null or an int >= {SPECIAL_TOKENS + TOKENS_PER_POINT} "
                f"(room for one point), got {limit!r}"
            )

    @classmethod
    def from_config(cls, node: Any, where: str) -> SamplingConfig:
        """Read `<where>.sampling` (absent keys take the defaults above)."""
        values = to_dict(node, f"{where}.sampling") if node is not None else {}
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{where}.sampling: unknown keys {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None

    @property
    def text_points(self) -> int:
        """How many of the K sampled points the point text holds."""
        if self.region_max_len is None:
            return self.num_points
        return min(self.num_points, (self.region_max_len - SPECIAL_TOKENS) // TOKENS_PER_POINT)


def to_dict(node: Any, where: str) -> dict[str, Any]:
    """An OmegaConf mapping (or dict) as a plain dict."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return dict(node)
    raise ConfigError(f"{where} must be a mapping, got {type(node).__name__}: {node!r:.80}")


def require(node: Any, key: str, where: str) -> Any:
    """`node[key]`, which must be present and not null."""
    value = node.get(key) if isinstance(node, (DictConfig, dict)) else None
    if value is None:
        raise ConfigError(f"{where}.{key} is not set")
    return value


def entry_list(node: Any, where: str) -> list[dict[str, Any]]:
    """A non-empty list of mappings, e.g. `build_info.annotations.train.files`."""
    if isinstance(node, ListConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, list) or not node:
        raise ConfigError(f"{where} must be a non-empty list, got {node!r:.80}")
    return [to_dict(item, f"{where}[{i}]") for i, item in enumerate(node)]


def existing_path(value: Any, where: str, kind: str = "file") -> Path:
    """A configured path that must exist: `kind` "file" or "folder". Relative paths are taken
    from the working directory; `~` is expanded."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path, got {value!r}")
    path = Path(resolve_path(value))
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        state = "does not exist" if not path.exists() else f"is not a {kind}"
        raise ConfigError(f"{where}: {path} {state} (relative paths start at {Path.cwd()})")
    return path
