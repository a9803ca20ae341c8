"""Bundle checks: model-zoo rules, MONAI workflow properties, the MONAI Label contract and a real run.

``verify_bundle(path, run=True, variant=None) -> list[Problem]`` is the entry point (see
:mod:`labelzoo.bundle.verify`); ``labelzoo bundle verify DIR`` prints its result.
"""

from labelzoo.bundle.problems import Problem


def verify_bundle(*args, **kwargs):  # noqa: ANN002, ANN003 (lazy: keeps `import labelzoo.bundle` light)
    """See :func:`labelzoo.bundle.verify.verify_bundle`."""
    from labelzoo.bundle.verify import verify_bundle as _verify

    return _verify(*args, **kwargs)


__all__ = ["Problem", "verify_bundle"]
