"""Work beyond one process: DDP helpers for bundles' ``multi_gpu_train.json`` (:mod:`labelzoo.distributed.ddp`)
and the Ray runner that schedules the independent trainings of ``labelzoo search`` and ``labelzoo train-cv``
(:mod:`labelzoo.distributed.runner`).

Importing this package imports neither torch.distributed nor Ray; the submodules do, when used.
"""
