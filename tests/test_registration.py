"""The plugin registers with LAVIS, also for code that never imports it."""
import json
import os
import subprocess
import sys
import textwrap

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_python(code: str, env=None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env or OFFLINE, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_interpreter_start_imports_neither_torch_nor_lavis():
    out = run_python(
        """
        import json, sys
        print(json.dumps({m: m in sys.modules for m in ("torch", "lavis", "lavis_regionvlm")}))
        """
    )
    assert json.loads(out) == {"torch": False, "lavis": False, "lavis_regionvlm": False}


def test_stock_load_model_and_preprocess_sees_the_plugin_in_a_fresh_process():
    out = run_python(
        """
        import json, sys, torch
        from lavis.models import load_model_and_preprocess
        model, vis, txt = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)
        image = vis["eval"](__import__("PIL.Image").Image.new("RGB", (80, 50), "red"))[None]
        loss = model({"image": image, "region_text": ["[10 20] [30 40]"],
                      "text_input": [""], "text_output": ["a red square"]})["loss"]
        caption = model.generate({"image": image, "region_text": ["[10 20]"]}, num_beams=1, max_length=5)
        print(json.dumps({"loss": float(loss), "caption_type": type(caption[0]).__name__,
                          "class": type(model).__name__, "plugin_loaded": "lavis_regionvlm" in sys.modules}))
        """
    )
    result = json.loads(out)
    assert result["class"] == "Blip2T5Region"
    assert result["plugin_loaded"]
    assert result["caption_type"] == "str"
    assert 0 < result["loss"] < float("inf")


def test_every_plugin_name_is_in_the_registry_after_import_lavis():
    out = run_python(
        """
        import json, lavis
        from lavis.common.registry import registry
        print(json.dumps({
            "model": registry.get_model_class("blip2_t5_region") is not None,
            "opt_model": registry.get_model_class("blip2_opt_region") is not None,
            "processors": [registry.get_processor_class(n) is not None
                           for n in ("region_image_train", "region_points")],
        }))
        """
    )
    assert json.loads(out) == {"model": True, "opt_model": True, "processors": [True, True]}


def test_autoload_can_be_switched_off():
    out = run_python(
        """
        import sys, lavis
        print("lavis_regionvlm" in sys.modules)
        """,
        env={**OFFLINE, "LAVIS_REGIONVLM_AUTOLOAD": "0"},
    )
    assert out == "False"
