"""The one place the plugin registers with LAVIS: import this module and every name exists.

LAVIS finds models, dataset builders, tasks, processors and runners by name in its registry,
filled by `@registry.register_*` decorators when the defining module is imported. Every such
decorator of the plugin lives in a LAVIS kind folder (`models/`, `datasets/`, `tasks/`,
`processors/`, `runners/`), and this module imports each of those modules (a test checks both).
Importing it also
- adds the plugin's architectures to LAVIS's `model_zoo` table (`lavis_regionvlm.models`),
- registers the project YAMLs' OmegaConf resolvers `${regionvlm_cwd:...}` and
  `${regionvlm_data:...}` (`lavis_regionvlm.config_resolvers`).

Who imports it: the start-up hook (`lavis_regionvlm_autoload`, installed by pip) right after
`lavis` is imported, so LAVIS's own `train.py` / `evaluate.py` and
`load_model_and_preprocess` see the names; the plugin's launchers, CLI and demo explicitly.
Without the hook (`python -S`, `LAVIS_REGIONVLM_AUTOLOAD=0`), `import lavis_regionvlm.registration`
before LAVIS reads a config. LAVIS is imported with the known third-party deprecation warnings
of its dependencies hidden (`lavis_regionvlm_autoload.quiet_import_warnings`).

Adding a model, dataset, task, processor or runner: put its module in the kind folder and add
its import below.
"""
from lavis_regionvlm_autoload import quiet_import_warnings

with quiet_import_warnings():  # the first `import lavis` may happen here (no start-up hook)
    # models: blip2_t5_region, blip2_opt_region (also listed in LAVIS's model_zoo)
    import lavis_regionvlm.models.blip2_opt_region  # noqa: F401
    import lavis_regionvlm.models.blip2_t5_region  # noqa: F401
    # dataset builders: localized_narratives, vg_region, global_caption, region_global_mix
    import lavis_regionvlm.datasets.builders  # noqa: F401
    # dataset builders: refcoco_ris (zero-shot RIS evaluation), vcr (zero-shot VCR evaluation)
    import lavis_regionvlm.datasets.refcoco_ris_builder  # noqa: F401
    import lavis_regionvlm.datasets.vcr_builder  # noqa: F401
    # processors: region_image_train, region_points
    import lavis_regionvlm.processors.image  # noqa: F401
    import lavis_regionvlm.processors.point_text  # noqa: F401
    # runners: runner_region
    import lavis_regionvlm.runners.runner_region  # noqa: F401
    # tasks: captioning_offline, region_captioning, zero_shot_ris, zero_shot_vcr
    import lavis_regionvlm.tasks.captioning_offline  # noqa: F401
    import lavis_regionvlm.tasks.region_captioning  # noqa: F401
    import lavis_regionvlm.tasks.zero_shot_ris  # noqa: F401
    import lavis_regionvlm.tasks.zero_shot_vcr  # noqa: F401

from lavis_regionvlm.config_resolvers import register_resolvers  # noqa: E402

register_resolvers()
