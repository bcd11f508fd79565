"""`image_io.load_image`, the one way images enter (demo upload, predictor, CLI, RIS): EXIF
orientation applied, truncated and corrupt files refused with a message naming the file,
limits checked from the header, PIL's global truncation flag left as LAVIS set it."""
import io

import numpy as np
import pytest
from PIL import Image, ImageFile

import lavis  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES = True, as in every real run)
from lavis_regionvlm.image_io import ImageInputError, ImageLimits, ImageNotFoundError, load_image

ORIENTATION = 0x0112


def stored_sideways(path, orientation=6):
    """A JPEG stored 40 wide x 20 high whose EXIF Orientation says "rotate 90 degrees clockwise to
    view" (6): shown upright it is 20 wide x 40 high. Stored, its top-left 10x10 block is red
    and the rest blue; upright, that red block is at the top RIGHT."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:] = (0, 0, 255)
    stored[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    return path


def noisy_file(fmt):
    pixels = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    path = stored_sideways(tmp_path / "phone.jpg")
    with Image.open(path) as raw:
        assert raw.size == (40, 20)  # what a plain PIL open gives
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (20, 40)
    pixels = np.asarray(image).astype(int)
    assert pixels[2, 17, 0] > 200 and pixels[2, 17, 2] < 60   # top right: red
    assert pixels[2, 2, 2] > 200 and pixels[2, 2, 0] < 60     # top left: blue
    assert np.array_equal(np.asarray(load_image(path.read_bytes())), pixels)  # bytes: the same pixels


def test_predictor_set_image_reads_the_upright_picture(tmp_path):
    from lavis_regionvlm.interactive import RegionPredictor

    predictor = RegionPredictor.from_pretrained("tiny")
    predictor.set_image(stored_sideways(tmp_path / "phone.jpg"))
    assert predictor.image_size == (20, 40)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused_and_the_global_flag_is_kept(fmt, tmp_path):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # LAVIS's choice, on import
    data = noisy_file(fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as plain:  # what PIL does under LAVIS's flag: a partly blank picture
        plain.load()
    with pytest.raises(ImageInputError, match=rf"cannot read '.*cut\.{fmt.lower()}': it is truncated or corrupt"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    assert load_image(data).size == (64, 64)  # the whole file is fine


def test_jpeg_cut_in_its_header_and_other_bad_files(tmp_path):
    data = noisy_file("JPEG")
    with pytest.raises(ImageInputError, match="'head.jpg': it is truncated or corrupt") as caught:
        load_image(data[:200], name="'head.jpg'")
    assert caught.value.status == 400
    with pytest.raises(ImageInputError, match="it is empty"):
        load_image(b"", name="'empty.png'")
    with pytest.raises(ImageInputError, match="it is not an image file"):
        load_image(b"hello, world", name="'notes.txt'")
    with pytest.raises(ImageNotFoundError, match="image file not found") as missing:
        load_image(tmp_path / "missing.png")
    assert isinstance(missing.value, FileNotFoundError) and isinstance(missing.value, ValueError)
    with pytest.raises(TypeError, match="path, bytes or a binary file"):
        load_image(3.5)


def test_limits_are_checked_from_the_header_and_name_the_option():
    data = noisy_file("PNG")
    limits = ImageLimits(max_pixels=1000, max_side=None, options="option --max-image-mp")
    with pytest.raises(ImageInputError, match=r"'big.png' is 64x64 pixels .* 0.0 MP in all \(option --max-image-mp\)") as e:
        load_image(data, name="'big.png'", limits=limits)
    assert e.value.status == 413
    with pytest.raises(ImageInputError, match="the limits are 32 pixels a side"):
        load_image(io.BytesIO(data), limits=ImageLimits(max_side=32))
    assert load_image(io.BytesIO(data), limits=ImageLimits(max_pixels=4096, max_side=64)).size == (64, 64)


def test_the_single_image_segment_command_refuses_a_truncated_image(tmp_path):
    import subprocess
    import sys

    cut = tmp_path / "cut.png"
    data = noisy_file("PNG")
    cut.write_bytes(data[: len(data) // 2])
    done = subprocess.run([sys.executable, "-m", "lavis_regionvlm.ris.segment", "--image", str(cut), "--expression",
                           "a dog", "--proposals", str(tmp_path / "none.json"), "--out", str(tmp_path / "out"),
                           "--model-type", "tiny"], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "it is truncated or corrupt" in done.stderr and "Traceback" not in done.stderr
