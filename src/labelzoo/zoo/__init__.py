"""A model zoo of bundles: pack a bundle as ``<name>_v<version>.zip``, publish it to a folder a static web
server serves (with a ``model_info.json`` index), and pull it back by name over HTTP(S) or a file path."""

from labelzoo.zoo.core import INDEX, index_key, pack_bundle, publish, pull, read_index

__all__ = ["INDEX", "index_key", "pack_bundle", "publish", "pull", "read_index"]
