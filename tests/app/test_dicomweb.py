"""The app on a hospital-style DICOMweb datastore: a real Orthanc, a real server, the Slicer plugin's client."""

import nibabel as nib
import numpy as np
import pytest

from labelzoo.data import make_ct_case
from labelzoo.data.dicom import write_ct_series

pytestmark = pytest.mark.server


def test_dicomweb_next_sample_and_label_round_trip(orthanc, server_factory, tmp_path):
    image, _, affine = make_ct_case(5, shape=(48, 40, 24))
    orthanc.upload(write_ct_series(image, affine, tmp_path / "series", series_description="lz test"))
    assert orthanc.series_modalities() == ["CT"]

    # the datastore is under test here, not the models: serve one bundle, no background scoring
    server = server_factory(orthanc.dicomweb, conf="models=btcv_ct_unetr_segmentation,skip_scoring=true",
                            extra_env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "dicom-cache")})
    client = server.client()
    assert client.info()["datastore"]["total"] == 1

    sample = client.next_sample("random", {})
    fetched = nib.load(sample["path"])
    # the series comes back with the geometry and intensities it was stored with
    assert fetched.shape == image.shape
    np.testing.assert_allclose(np.abs(np.diag(fetched.affine)[:3]), [1.5, 1.5, 2.0], atol=1e-4)
    np.testing.assert_allclose(fetched.get_fdata(), np.rint(image), atol=1)

    label = (fetched.get_fdata() > 90).astype(np.uint8)
    label_file = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(label, fetched.affine), label_file)
    saved = client.save_label(sample["id"], str(label_file), params={"label_info": [{"name": "liver", "idx": 1}]})
    assert saved["image"] == sample["id"]
    # the label was converted to DICOM SEG (dcmqi, no download) and stored in the PACS
    assert orthanc.series_modalities() == ["CT", "SEG"]
    assert "releases/download" not in server.log_text(), "dcmqi must come from the dcmqi package, not a download"
