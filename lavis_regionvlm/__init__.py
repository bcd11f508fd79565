"""RegionVLM for Salesforce LAVIS.

Importing this package registers with LAVIS's registry:
- the model `blip2_t5_region` (model types `tiny`, `pretrain_flant5xl`, `regionvlm_flant5xl`,
  `pretrain_flant5xxl`, `regionvlm_flant5xxl`),
- the processors `region_image_train` and `region_points`,
- the runner `runner_region` and the tasks under `lavis_regionvlm.tasks`;
and with OmegaConf the project YAMLs' resolvers `${regionvlm_cwd:...}` and
`${regionvlm_data:...}` (`lavis_regionvlm.config_resolvers`). LAVIS's `model_zoo` lists
`blip2_t5_region`. LAVIS is imported with the known third-party deprecation warnings of its
dependencies hidden (`lavis_regionvlm_autoload.quiet_import_warnings`).

`lavis_regionvlm.regions` (`points_to_text`, `Region`) imports without torch or LAVIS.
"""
from lavis_regionvlm.regions import Region, RegionError, points_to_text, text_to_points

__version__ = "0.1.0"
__all__ = ["Region", "RegionError", "points_to_text", "text_to_points", "__version__"]

from lavis_regionvlm_autoload import quiet_import_warnings  # noqa: E402

with quiet_import_warnings():  # the first `import lavis` may happen here (no start-up hook)
    import lavis_regionvlm.datasets  # noqa: E402,F401  (registers dataset builders)
    import lavis_regionvlm.models  # noqa: E402,F401  (registers models)
    import lavis_regionvlm.processors  # noqa: E402,F401  (registers processors)
    import lavis_regionvlm.runners  # noqa: E402,F401  (registers runners)
    import lavis_regionvlm.tasks  # noqa: E402,F401  (registers tasks)

from lavis_regionvlm.config_resolvers import register_resolvers  # noqa: E402

register_resolvers()
