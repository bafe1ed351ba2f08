"""Make sparsity pay: export a masked model to one that stores and computes only its active weights.

    from sparselearning.export import to_sparse, save_sparse, load_sparse

    sparse_model = to_sparse(model, masking, example_input=batch)   # CSR Linear; with example_input, timed
    save_sparse(sparse_model, "model.sparse.pt", spec={"name": "lenet5", "kwargs": {}})
    model = load_sparse("model.sparse.pt")                          # torch.load(weights_only=True) underneath
    logits = model(model.preprocessing(raw_uint8_pixels))          # the inputs it was trained on (None: not recorded)

From the command line: `sparselearning export RUN_DIR_OR_CHECKPOINT --out FILE`; from Python, for a run whose
model was built by `model._target_`: `export_checkpoint(RUN_DIR, FILE, model=a_freshly_built_model)`.
"""

from sparselearning.export.command import export_checkpoint
from sparselearning.export.convert import CONV_DENSITY_THRESHOLD, LayerDecision, to_sparse, to_sparse_with_report
from sparselearning.export.layers import (
    BiasOnly,
    CondensedLinear,
    SparseConv2d,
    SparseLinear,
    SparseMultiheadAttention,
    SparseRecurrent,
)
from sparselearning.export.loader import load_sparse
from sparselearning.export.preprocessing import Preprocessing
from sparselearning.export.semi_structured import nm_mask
from sparselearning.export.serialize import (
    FORMAT,
    ExportReport,
    build_model,
    export_report,
    save_sparse,
    sparse_payload,
)

__all__ = [
    "CONV_DENSITY_THRESHOLD",
    "FORMAT",
    "BiasOnly",
    "CondensedLinear",
    "ExportReport",
    "LayerDecision",
    "Preprocessing",
    "SparseConv2d",
    "SparseLinear",
    "SparseMultiheadAttention",
    "SparseRecurrent",
    "build_model",
    "export_checkpoint",
    "export_report",
    "load_sparse",
    "nm_mask",
    "save_sparse",
    "sparse_payload",
    "to_sparse",
    "to_sparse_with_report",
]
