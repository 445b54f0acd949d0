"""``params.yaml``: its schema (:mod:`.schema`) and the one loader (:mod:`.loader`)."""

from avemotion.params.loader import (
    StageParams,
    UndeclaredParamError,
    load_params,
    resolve_n_jobs,
    stage_params,
    validate_params,
)
from avemotion.params.schema import MODALITIES, Params

__all__ = [
    "MODALITIES",
    "Params",
    "StageParams",
    "UndeclaredParamError",
    "load_params",
    "resolve_n_jobs",
    "stage_params",
    "validate_params",
]
