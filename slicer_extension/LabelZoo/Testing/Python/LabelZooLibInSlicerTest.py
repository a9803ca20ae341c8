"""LabelZooLib inside 3D Slicer's own Python (run by ctest through slicer_add_python_unittest).

The full Lib test suite runs with pytest outside Slicer (tests/slicer/ in the repository); this checks
that the Lib imports and works with the Python, numpy and ssl that Slicer ships.
"""

import os
import sys
import unittest

MODULE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if MODULE_DIR not in sys.path:
    sys.path.insert(0, MODULE_DIR)


class LabelZooLibInSlicerTest(unittest.TestCase):
    def test_label_table_and_merge(self):
        import numpy as np
        from LabelZooLib import LabelTable, merge_labelmap, remap_labelmap
        from LabelZooLib.labels import value_mapping

        model = LabelTable.from_server({"background": 0, "spleen": 1, "liver": 2})
        session = LabelTable.from_server({"liver": 1})
        mapping = value_mapping(model, session)
        incoming = remap_labelmap(np.array([0, 1, 2]), mapping)
        self.assertEqual(merge_labelmap(np.array([1, 0, 0]), incoming, "fill").tolist(), [1, 2, 1])

    def test_client_verifies_tls_by_default(self):
        import ssl
        import urllib.request

        from LabelZooLib import LabelZooClient

        client = LabelZooClient("https://example.org")
        handler = next(h for h in client._opener.handlers if isinstance(h, urllib.request.HTTPSHandler))
        self.assertEqual(handler._context.verify_mode, ssl.CERT_REQUIRED)


def runTest():
    unittest.main(module=__name__, argv=[sys.argv[0]], exit=False)


if __name__ == "__main__":
    unittest.main()
