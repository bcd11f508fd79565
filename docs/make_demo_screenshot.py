"""Make docs/demo.png, the README's demo screenshot, with the real server and a real browser.

    python docs/make_demo_screenshot.py --checkpoint output/regionvlm_tiny/train/checkpoint_9.pth \
        [--image data/synthetic/images/000000002001.png] [--out docs/demo.png]

Starts the demo on the trained `tiny` model (and the random-weight tiny SAM), opens it in
headless Chromium, uploads a held-out synthetic image, clicks three points on each of two
objects (from the image's narrative traces), captions them, shows region [0]'s attention
map, and takes a screenshot of the page.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from lavis_regionvlm.data.ln_prepared import PreparedNarratives
from lavis_regionvlm.demo import DemoConfig, create_app, start_server
from lavis_regionvlm.demo.server import mask_generator
from lavis_regionvlm.interactive import RegionPredictor

HERE = Path(__file__).resolve().parent


def traces_of(image_name: str, prepared: Path) -> list:
    """The narrative traces (N, 2) of the phrases of one prepared image."""
    return [sample.points for sample in PreparedNarratives(prepared) if sample.image == image_name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained tiny checkpoint (the quick start's)")
    parser.add_argument("--image", default="data/synthetic/images/000000002001.png")
    parser.add_argument("--prepared", default="data/synthetic/prepared/ln_val", help="its prepared narratives")
    parser.add_argument("--out", default=str(HERE / "demo.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    image = Path(args.image)
    traces = traces_of(image.name, Path(args.prepared))[:2]
    predictor = RegionPredictor.from_pretrained("tiny", checkpoint=args.checkpoint)
    server = start_server(create_app(predictor, DemoConfig(mask_generator=mask_generator("tiny"))))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(server.url)
            page.wait_for_function("window.demo && window.demo.info !== null")
            page.set_input_files("#image-input", str(image))
            page.wait_for_selector("#canvas[data-ready=true]")
            canvas = page.locator("#canvas")
            box = canvas.bounding_box()
            for index, trace in enumerate(traces):
                for x, y in trace[:: max(1, len(trace) // 3)][:3]:
                    canvas.click(position={"x": float(x) * box["width"], "y": float(y) * box["height"]})
                page.click("#add-region")
                page.wait_for_selector(f"#regions li[data-index='{index}']")
            for index in range(len(traces)):
                page.click(f"#regions li[data-index='{index}'] >> text=caption")
                page.wait_for_function(f"document.querySelectorAll('.message.bot').length > {index}")
            page.click("#regions li[data-index='0'] >> text=attention")
            page.wait_for_selector("#result:not([hidden])")
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
