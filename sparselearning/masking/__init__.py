"""The parts `sparselearning.core.Masking` is built from, each with one job.

- `records`: one record per masked parameter (its names, the parameter, its owner modules, the mask, the
  mask's cached float form and its counts), and the seed API's name-keyed views over them (`mask_dict`, `params`);
- `apply`: the per-step work that keeps masked weights and their optimizer state at zero (gradient and weight
  masking, the in-place weight-decay trick, gradient unscaling under AMP);
- `schedule`: when masks change and how the drop fraction decays;
- `topology`: the arithmetic of an update (how much each layer regrows, what changed), returned as a record;
- `observers`: what runs after an update or a restore without the core knowing it (FLOPs tracking, the
  cross-rank mask check, the ever-active record behind the ITOP rate);
- `view`: the protocol through which the rule functions of `sparselearning.funcs` read a `Masking`.

None of these modules imports `core`, `funcs`, `counting` or `sync`: they sit below all of them.
"""
