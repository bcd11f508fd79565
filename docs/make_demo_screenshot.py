"""Make docs/demo.png, the README's demo screenshot, with the real server and a real browser.

    python docs/make_demo_screenshot.py --checkpoint output/regionvlm_tiny/train/checkpoint_9.pth \
        [--image data/synthetic/images/000000002001.png] [--prepared data/synthetic/prepared/ln_val] \
        [--out docs/demo.png]

Starts the demo on the trained `tiny` model (without --checkpoint: the untrained one, whose
captions are noise) and the random-weight tiny SAM, opens it in headless Chromium, uploads a
held-out synthetic image, and uses the region tools with the mouse and keys: drags a box
around the first object of the image's narrative (from its trace), clicks SAM on the second
object and adds its mask, captions both regions, segments by text with the first object's
phrase (the chosen proposal drawn on the image, the best-scored proposals listed), and takes
a screenshot of the page. The tiny SAM has random weights: its masks show what the tools do,
not what SAM finds (`--sam-type vit_h` with the released weights does that).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives, PreparedSample
from lavis_regionvlm.demo import DemoConfig, create_app, start_server
from lavis_regionvlm.demo.server import mask_generator
from lavis_regionvlm.interactive import RegionPredictor

HERE = Path(__file__).resolve().parent
BOX_MARGIN = 0.04  # relative padding around a trace's points for the box region


def samples_of(image_name: str, prepared: Path) -> list[PreparedSample]:
    """The narrative phrases (text, (N, 2) relative trace) of one prepared image."""
    return [sample for sample in PreparedNarratives(prepared) if Path(sample.image).name == image_name]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a trained tiny checkpoint (the quick start's)")
    parser.add_argument("--image", default="data/synthetic/images/000000002001.png")
    parser.add_argument("--prepared", default="data/synthetic/prepared/ln_val", help="its prepared narratives")
    parser.add_argument("--out", default=str(HERE / "demo.png"))
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    image = Path(args.image)
    samples = samples_of(image.name, Path(args.prepared))[:2]
    if len(samples) < 2:
        parser.error(f"{args.prepared} has {len(samples)} phrases of {image.name}; the screenshot needs two")
    predictor = RegionPredictor.from_pretrained("tiny", checkpoint=args.checkpoint)
    server = start_server(create_app(predictor, DemoConfig(mask_generator=mask_generator("tiny"))))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(server.url)
            page.wait_for_function("window.demo && window.demo.info !== null")
            page.set_input_files("#image-input", str(image))
            page.wait_for_selector("#canvas[data-ready=true]")
            frame = page.locator("#canvas").bounding_box()

            def at(x: float, y: float) -> tuple[float, float]:
                return frame["x"] + float(x) * frame["width"], frame["y"] + float(y) * frame["height"]

            # [0] a box around the first object: drag, then Enter
            trace = samples[0].points
            low = np.clip(trace.min(axis=0) - BOX_MARGIN, 0, 1)
            high = np.clip(trace.max(axis=0) + BOX_MARGIN, 0, 1)
            page.check("input[name=mode][value=box]")
            page.mouse.move(*at(*low))
            page.mouse.down()
            page.mouse.move(*at(*high), steps=8)
            page.mouse.up()
            page.keyboard.press("Enter")
            page.wait_for_selector("#regions li[data-index='0']")

            # [1] SAM click-to-mask on the second object: two clicks on its trace, then Add region
            page.check("input[name=mode][value=sam]")
            trace = samples[1].points
            for count, (x, y) in enumerate(trace[[0, len(trace) // 2]], start=1):
                page.mouse.click(*at(x, y))
                page.wait_for_function(f"window.demo.sam.points.length === {count} && window.demo.sam.result "
                                       "!== null && window.demo.busy === 0")
            page.click("#add-region")
            page.wait_for_selector("#regions li[data-index='1']")

            for index in range(2):
                page.click(f"#regions li[data-index='{index}'] >> text=caption")
                page.wait_for_function(f"document.querySelectorAll('.message.bot').length > {index}")
            page.fill("#expression", samples[0].text)
            page.press("#expression", "Enter")
            page.wait_for_selector("#segmentation:not([hidden])")
            page.mouse.move(0, 0)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
