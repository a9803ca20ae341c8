"""The self-configuring planner (nnU-Net v2's public rules) that turns a dataset into DynUNet bundles.

Folders are pipeline stages, as in ``nnunetv2/experiment_planning``:

1. :mod:`labelzoo.planning.fingerprint` (IO): dataset -> ``fingerprint.json``.
2. :mod:`labelzoo.planning.rules` and :mod:`labelzoo.planning.planner` (pure): fingerprint -> ``plans.json``.
3. :mod:`labelzoo.planning.emit` (IO): plans -> one DynUNet MONAI bundle per configuration.
4. :mod:`labelzoo.planning.choose` (pure) and :mod:`labelzoo.planning.crossval` (IO): cross-validation,
   post-processing decision and the choice of the best configuration or ensemble.
"""
