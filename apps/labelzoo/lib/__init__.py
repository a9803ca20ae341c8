"""The LabelZoo app's MONAI Label layer: tasks, datastore, strategies, scoring worker, routes.

Pure logic (ranking, uncertainty, validation, discovery, progress) lives in the ``labelzoo`` package;
this folder only adapts it to MONAI Label's interfaces.
"""
