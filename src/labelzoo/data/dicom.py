"""Write a volume as a DICOM CT series (one file per slice), for DICOMweb / PACS demos and tests.

The geometry follows the NIfTI affine: DICOM uses LPS patient coordinates and NIfTI RAS, so x and y
flip sign. Pixel data are stored as int16 with RescaleSlope 1 / RescaleIntercept 0 (Hounsfield units).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from labelzoo.errors import LabelZooError

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def write_ct_series(
    image: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    patient_id: str = "LZ0001",
    patient_name: str = "LabelZoo^Synthetic",
    series_description: str = "LabelZoo synthetic CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[Path]:
    """Write a 3D HU volume (x, y, z voxel order) as a CT series of axial slices.

    Args:
        image: 3D array in Hounsfield units, indexed (x, y, z) like the NIfTI data.
        affine: 4x4 NIfTI (RAS) affine of ``image``; its columns must be orthogonal.
        out_dir: folder for the slice files (created).
        patient_id: DICOM PatientID.
        patient_name: DICOM PatientName.
        series_description: DICOM SeriesDescription.
        study_uid: StudyInstanceUID (generated when absent).
        series_uid: SeriesInstanceUID (generated when absent).

    Returns:
        The written file paths, one per slice.

    Raises:
        LabelZooError: if ``image`` is not 3D.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    if image.ndim != 3:
        raise LabelZooError(f"a CT series needs a 3D image, got shape {image.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=float)[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir, slice_dir = (lps[:, i] / spacing[i] for i in range(3))
    now = datetime.datetime.now()
    pixels = np.clip(np.rint(image), -32768, 32767).astype(np.int16)

    paths = []
    for k in range(image.shape[2]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out_dir / f"slice_{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.Modality, ds.SeriesDescription = "CT", series_description
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        # DICOM rows run along the image's second axis: pixel (row r, column c) is voxel (x=c, y=r).
        ds.ImagePositionPatient = [float(v) for v in lps[:, 3] + k * spacing[2] * slice_dir]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = image.shape[1], image.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)
        paths.append(path)
    return paths
