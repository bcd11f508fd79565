"""The plugin registers with LAVIS, also for code that never imports it."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

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


PLUGIN_NAMES = {
    "model": ["blip2_t5_region", "blip2_opt_region"],
    "builder": ["localized_narratives", "vg_region", "global_caption", "region_global_mix", "refcoco_ris", "vcr"],
    "task": ["region_captioning", "zero_shot_ris", "zero_shot_vcr", "captioning_offline"],
    "processor": ["region_image_train", "region_points"],
    "runner": ["runner_region"],
}


def test_every_plugin_name_is_in_the_registry_after_import_lavis():
    """The start-up hook registers every name (through `lavis_regionvlm.registration`) and the
    project YAMLs' resolvers, in a process that never imports the plugin itself."""
    out = run_python(
        f"""
        import json, lavis
        from lavis.common.registry import registry
        from omegaconf import OmegaConf
        names = {PLUGIN_NAMES!r}
        found = {{kind: [n for n in ns if getattr(registry, f"get_{{kind}}_class")(n) is not None]
                 for kind, ns in names.items()}}
        found["resolvers"] = [OmegaConf.has_resolver(n) for n in ("regionvlm_cwd", "regionvlm_data")]
        print(json.dumps(found))
        """
    )
    assert json.loads(out) == {**PLUGIN_NAMES, "resolvers": [True, True]}


def test_importing_a_plugin_module_before_lavis_registers_that_module_without_error():
    """The hook registers nothing while a plugin module imports lavis (that would import
    half-initialised plugin modules); the module's own decorators still run, and importing
    `lavis_regionvlm.registration` then registers the rest."""
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(
            """
            import json, sys
            import lavis_regionvlm.tasks.zero_shot_ris
            from lavis.common.registry import registry
            before = [registry.get_task_class("zero_shot_ris") is not None,
                      "lavis_regionvlm.registration" in sys.modules]
            import lavis_regionvlm.registration
            print(json.dumps(before + [registry.get_builder_class("refcoco_ris") is not None]))
            """)],
        capture_output=True, text=True, env=OFFLINE, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, False, True]


@pytest.mark.parametrize("first", ["from lavis_regionvlm.models.region_core import RegionBlip2",
                                   "from lavis_regionvlm.interactive import RegionPredictor",
                                   "import lavis"])
def test_load_model_and_preprocess_works_whatever_was_imported_first(first):
    """A plugin module imported before LAVIS makes the hook register nothing; building a region
    model registers the rest, so LAVIS finds the processors its config names (on the merge of the
    layout work, the first two orders failed: `'NoneType' object has no attribute 'from_config'`)."""
    out = run_python(
        f"""
        import json
        {first}
        from lavis.common.registry import registry
        from lavis.models import load_model_and_preprocess
        model, vis, txt = load_model_and_preprocess("blip2_t5_region", "tiny", is_eval=True)
        print(json.dumps([type(model).__name__, type(vis["train"]).__name__,
                          registry.get_task_class("zero_shot_ris") is not None]))
        """
    )
    assert json.loads(out) == ["Blip2T5Region", "RegionImageTrainProcessor", True]


def test_autoload_can_be_switched_off():
    out = run_python(
        """
        import sys, lavis
        print("lavis_regionvlm" in sys.modules)
        """,
        env={**OFFLINE, "LAVIS_REGIONVLM_AUTOLOAD": "0"},
    )
    assert out == "False"
