"""The pluggable pieces of a sparse method, each a module with a `registry` of named variants.

- `decay`: how the drop fraction (or target sparsity) changes over training;
- `init_scheme`: the initial masks (uniform, ER/ERK, lottery ticket, ...);
- `prune`: which active weights a mask update removes;
- `grow`: which inactive weights it adds back;
- `redistribute`: how the freed budget is shared between layers.
"""
