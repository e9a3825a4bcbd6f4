"""The SER search space: candidate ops, cells, ``SERSpace`` and the architecture format.

Nothing here imports ``strategies``: the space is reusable in any NNI experiment.
"""

import warnings as _warnings

# NNI 3.0 scans torch.nn on import and warns that torch.nn.Buffer and other new non-layer
# classes are "not a nn.Module": noise on current torch (see strategies/compat.py, fix 2).
_warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*", category=RuntimeWarning)

from . import nni_fixes as _nni_fixes

_nni_fixes.apply()  # TPE reads the cells' input choices (ser_space/nni_fixes.py)

from .arch import (
    ARCH_FORMAT,
    ARCH_VERSION,
    Architecture,
    ArchitectureError,
    build_model,
    count_multiply_adds,
    count_parameters,
    export_architecture,
    label_specs,
    load_architecture,
    parse_architecture,
    random_architecture,
    save_architecture,
    validate_architecture,
)
from . import fast
from .config import PAPER_CNN_OPS, RESIZABLE_FIELDS, SEQ_OP_SETS, SeqOpSet, SpaceConfig
from .draw import draw_cells
from .ops import CNN_OPS, POOL_OPS, SEQ_OPS
from .space import SERSpace, as_config, choice_labels, set_drop_path_prob

__all__ = [
    "ARCH_FORMAT",
    "ARCH_VERSION",
    "Architecture",
    "ArchitectureError",
    "CNN_OPS",
    "PAPER_CNN_OPS",
    "RESIZABLE_FIELDS",
    "POOL_OPS",
    "SEQ_OPS",
    "SEQ_OP_SETS",
    "SERSpace",
    "SeqOpSet",
    "SpaceConfig",
    "as_config",
    "build_model",
    "choice_labels",
    "count_multiply_adds",
    "count_parameters",
    "draw_cells",
    "export_architecture",
    "fast",
    "label_specs",
    "load_architecture",
    "parse_architecture",
    "random_architecture",
    "save_architecture",
    "set_drop_path_prob",
    "validate_architecture",
]
