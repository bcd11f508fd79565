"""Every mistake a `regionvlm` user can make is one line on stderr and an exit code, never a
traceback: 2 for a bad argument or input file (the line names the option), 1 for a failure
while running, 130 for Ctrl+C; `--debug` shows the traceback of an unexpected error.

Each case of issue 14 runs through `main(argv)` in-process (the tiny model loads once per
process; `capfd` also watches the real stderr for a traceback printed behind our back). The
400 MP image also runs as a real `python -m lavis_regionvlm.cli` subprocess (each costs the
LAVIS import, 7+ s on 2 cores; tests/test_cli.py runs another one)."""
import importlib
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lavis_regionvlm.cli import main
from lavis_regionvlm.regions.masks import mask_to_rle

cli_module = importlib.import_module("lavis_regionvlm.cli.main")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_huge_png(path, side: int = 20000) -> None:
    """A valid, all-black 1-bit PNG of side x side pixels (400 MP at 20000) in about 50 KB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)  # filter byte + packed bits
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The inputs of the bad invocations, by name."""
    root = tmp_path_factory.mktemp("cli_errors")
    paths = {name: root / name for name in (
        "img.png", "huge.png", "garbage.pth", "ckpt_dir", "truncated.json", "no_records.json",
        "other_size.json", "bad.yaml", "no_sam.yaml", "unknown_sam.yaml", "existing.txt")}
    Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)).save(paths["img.png"])
    write_huge_png(paths["huge.png"])
    paths["garbage.pth"].write_bytes(np.random.default_rng(1).bytes(3000))
    paths["ckpt_dir"].mkdir()
    mask = np.zeros((48, 80), bool)
    mask[5:30, 5:40] = True
    whole = json.dumps([{"segmentation": mask_to_rle(mask)}])
    paths["truncated.json"].write_text(whole[: len(whole) // 2])
    paths["no_records.json"].write_text('{"proposals": 3}')
    paths["other_size.json"].write_text(json.dumps([{"segmentation": mask_to_rle(np.ones((40, 40), bool))}]))
    paths["bad.yaml"].write_text("sam:\n  model_type: [vit_h\n")
    paths["no_sam.yaml"].write_text("generator:\n  points_per_side: 4\n")
    paths["unknown_sam.yaml"].write_text("sam:\n  model_type: vit_q\n")
    paths["existing.txt"].write_text("not a folder")
    return paths


def run(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def image_args(f, *extra):
    return ("--image", f["img.png"], "--model-type", "tiny", "--device", "cpu", *extra)


# (id, argv from the files, exit code, fragments the one error line must hold)
CASES = [
    ("400MP image", lambda f: ("caption", "--image", f["huge.png"], "--model-type", "tiny"), 2,
     lambda f: ["--image", str(f["huge.png"]), "20000x20000", "100.0 MP", "option --max-image-mp"]),
    ("max-image-mp 0", lambda f: ("caption", *image_args(f, "--max-image-mp", "0")), 2,
     lambda f: ["--max-image-mp", "must be a finite number > 0"]),
    ("RLE mask over the mask limit", lambda f: ("caption", *image_args(
        f, "--region", '{"rle": {"size": [16000, 16000], "counts": "0"}}')), 2,
     lambda f: ["--region #1", "16000x16000", "option --max-mask-mp"]),
    ("polygons canvas over a lowered mask limit", lambda f: ("caption", *image_args(
        f, "--max-mask-mp", "0.001", "--region", '{"polygons": [[1, 1, 9, 1, 5, 5]], "height": 48, "width": 80}')), 2,
     lambda f: ["--region #1", "48x80", "option --max-mask-mp"]),
    ("missing checkpoint", lambda f: ("caption", *image_args(f, "--checkpoint", f["img.png"].parent / "no.pth")), 2,
     lambda f: ["--checkpoint: no such file", "no.pth"]),
    ("checkpoint folder", lambda f: ("caption", *image_args(f, "--checkpoint", f["ckpt_dir"])), 2,
     lambda f: ["--checkpoint", str(f["ckpt_dir"]), "is a folder"]),
    ("bad checkpoint", lambda f: ("caption", *image_args(f, "--checkpoint", f["garbage.pth"])), 2,
     lambda f: ["--checkpoint", str(f["garbage.pth"])]),
    ("demo missing checkpoint", lambda f: ("demo", "--model-type", "tiny", "--device", "cpu", "--port", "0",
                                           "--checkpoint", f["img.png"].parent / "no.pth"), 2,
     lambda f: ["--checkpoint: no such file"]),
    ("demo bad checkpoint", lambda f: ("demo", "--model-type", "tiny", "--device", "cpu", "--port", "0",
                                       "--checkpoint", f["garbage.pth"]), 2,
     lambda f: ["--checkpoint", str(f["garbage.pth"])]),
    ("num-beams 0", lambda f: ("caption", *image_args(f, "--num-beams", "0")), 2,
     lambda f: ["--num-beams", "must be >= 1, got 0"]),
    ("max-new-tokens -1", lambda f: ("ask", *image_args(f, "--question", "q", "--max-new-tokens", "-1")), 2,
     lambda f: ["--max-new-tokens", "must be >= 1, got -1"]),
    ("device tpu:9", lambda f: ("caption", *image_args(f, "--device", "tpu:9")), 2,
     lambda f: ["--device", "'tpu:9'", "use cpu, cuda"]),
    pytest.param("device cuda without a GPU", lambda f: ("caption", *image_args(f, "--device", "cuda")), 2,
                 lambda f: ["--device", "'cuda': no CUDA GPU"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    ("device past the last GPU",
     lambda f: ("caption", *image_args(f, "--device", f"cuda:{torch.cuda.device_count()}")), 2,
     lambda f: ["--device", f"'cuda:{torch.cuda.device_count()}'"]),
    ("prompt with two fields", lambda f: ("ask", *image_args(f, "--question", "q", "--prompt", "{0} {1}")), 2,
     lambda f: ["--prompt", "exactly one {}", "found 2"]),
    ("truncated proposals", lambda f: ("segment", *image_args(f, "--expression", "x",
                                                              "--proposals", f["truncated.json"])), 2,
     lambda f: ["--proposals", str(f["truncated.json"])]),
    ("proposals without records", lambda f: ("segment", *image_args(f, "--expression", "x",
                                                                    "--proposals", f["no_records.json"])), 2,
     lambda f: ["--proposals", str(f["no_records.json"]), "proposals"]),
    ("proposals of another image size", lambda f: ("segment", *image_args(f, "--expression", "x",
                                                                          "--proposals", f["other_size.json"])), 2,
     lambda f: ["--proposals", str(f["other_size.json"]), "48x80"]),
    ("sam-config bad YAML", lambda f: ("segment", *image_args(f, "--expression", "x", "--sam-config", f["bad.yaml"])),
     2, lambda f: ["--sam-config", str(f["bad.yaml"]), "not valid YAML", "line 3"]),
    ("sam-config without sam", lambda f: ("segment", *image_args(f, "--expression", "x",
                                                                 "--sam-config", f["no_sam.yaml"])), 2,
     lambda f: ["--sam-config", str(f["no_sam.yaml"]), "'sam' block"]),
    ("sam-config unknown SAM", lambda f: ("segment", *image_args(f, "--expression", "x",
                                                                 "--sam-config", f["unknown_sam.yaml"])), 2,
     lambda f: ["--sam-config", str(f["unknown_sam.yaml"]), "vit_q"]),
    ("out names an existing file", lambda f: ("segment", *image_args(f, "--expression", "x", "--proposals",
                                                                     f["no_records.json"], "--out",
                                                                     f["existing.txt"])), 2,
     lambda f: ["--out", str(f["existing.txt"]), "existing file"]),
    ("demo port 99999", lambda f: ("demo", "--model-type", "tiny", "--device", "cpu", "--port", "99999"), 2,
     lambda f: ["--port", "0..65535", "99999"]),
    ("chat max-input-tokens 0", lambda f: ("chat", *image_args(f, "--max-input-tokens", "0")), 2,
     lambda f: ["--max-input-tokens", "got 0"]),
]


@pytest.mark.parametrize("name, argv, code, fragments", CASES, ids=[
    c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_a_bad_invocation_is_one_line_and_an_exit_code(files, capfd, name, argv, code, fragments):
    argv = argv(files)
    got, out, err = run(argv)
    real_out, real_err = capfd.readouterr()
    assert "Traceback" not in err and "Traceback" not in real_err
    assert got == code, err
    assert out == ""
    assert err.startswith(f"regionvlm {argv[0]}: error: ") and err.count("\n") == 1, err
    for fragment in fragments(files):
        assert fragment in err, err


def test_an_unexpected_error_is_one_line_unless_debug(files, monkeypatch):
    def broken(path, max_megapixels=None):
        raise KeyError("boom")

    monkeypatch.setattr(cli_module, "read_image", broken)
    code, out, err = run(("caption", *image_args(files)))
    assert code == 1 and out == ""
    assert err == "regionvlm caption: error: KeyError: 'boom' (run with --debug for the traceback)\n"
    with pytest.raises(KeyError, match="boom"):
        run(("caption", *image_args(files, "--debug")))


def test_ctrl_c_exits_130_quietly(files, monkeypatch):
    def interrupted(path, max_megapixels=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "read_image", interrupted)
    try:
        result = run(("caption", *image_args(files)))
    except KeyboardInterrupt:  # would stop the whole pytest session
        pytest.fail("Ctrl+C escaped main() (a traceback for the user)")
    assert result == (130, "", "")


def test_argparse_errors_are_one_line_too(files):
    code, out, err = run(("ask", *image_args(files)))
    assert code == 2 and out == ""
    assert err == ("regionvlm ask: error: the following arguments are required: --question "
                   "(see regionvlm ask --help)\n")


def test_the_real_command_prints_no_traceback(files):
    argv = ["caption", "--image", str(files["huge.png"]), "--model-type", "tiny"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "lavis_regionvlm.cli", *argv],
                          capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"regionvlm {argv[0]}: error: ")]
    assert len(errors) == 1 and "--image" in errors[0], done.stderr[-3000:]


def test_a_polygon_region_reaches_the_polygon_rasteriser(files, monkeypatch):
    """`--region` polygons go to `masks.polygons_to_mask` (where far-out vertices are clipped)
    and its refusals come back as one line naming the argument, before the model loads."""
    from lavis_regionvlm.regions import RegionError, masks

    seen = []

    def spy(polygons, height, width):
        seen.append((polygons, height, width))
        raise RegionError("refused by the rasteriser")

    monkeypatch.setattr(masks, "polygons_to_mask", spy)
    region = '{"polygons": [[0, 0, 10, 0, 1e7, 30]], "height": 48, "width": 80}'
    code, out, err = run(("caption", *image_args(files, "--points", "[10 10]", "--region", region)))
    assert seen == [([[0, 0, 10, 0, 1e7, 30]], 48, 80)]
    assert (code, out, err) == (2, "", "regionvlm caption: error: --region #2: refused by the rasteriser\n")
