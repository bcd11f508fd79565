"""RegionVLM for Salesforce LAVIS.

Importing this package imports neither torch nor LAVIS and registers nothing: it gives the
version and the torch-free region helpers (`Region`, `points_to_text`, ...; the whole
`lavis_regionvlm.regions` package imports without torch or LAVIS).

Registration with LAVIS's registry (the model `blip2_t5_region`, the dataset builders, tasks,
processors, the runner `runner_region`, the project YAMLs' resolvers) is done by
`lavis_regionvlm.registration`: the start-up hook installed with the package imports it right
after `lavis` is imported; without the hook, `import lavis_regionvlm.registration`.

Layout: LAVIS kind folders hold everything registered (`models/`, `datasets/`, `tasks/`,
`processors/`, `runners/`); feature packages hold the algorithms (`regions/`, `ris/`, `vcr/`,
`interactive/`); `preparation/` turns raw data into what the datasets read; `common/` holds
helpers several features share; `cli/`, `demo/`, `reproduce/` and the `launch`/`train`/
`evaluate`/`quickstart` modules are the entry points.
"""
from lavis_regionvlm.regions import Region, RegionError, points_to_text, text_to_points

__version__ = "0.1.0"
__all__ = ["Region", "RegionError", "points_to_text", "text_to_points", "__version__"]
