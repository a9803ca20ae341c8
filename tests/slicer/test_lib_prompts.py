"""LabelZooLib prompts: per-segment bookkeeping, undo, request params, merging by geometry (no Slicer)."""

import numpy as np
import pytest
from LabelZooLib import LabelZooLibError, PromptBook, merge_segment, resample_to


def test_prompts_per_segment_with_undo():
    book = PromptBook()
    book.add("Liver", "foreground", [[10.4, 20, 5]])
    book.add("Liver", "background", [[1, 2, 3]])
    book.add("Liver", "box", [[5, 9, 4], [2, 3, 4]])
    book.add("Liver", "scribble", [[1, 1, 1], [2, 2, 1]], background=True)
    book.add("Liver", "lasso", [[0, 0, 2], [0, 4, 2], [4, 4, 2]], axis=2)
    book.add("Spleen", "foreground", [[3, 3, 3]])
    params = book.params("Liver")
    assert params["liver"] == [[10, 20, 5]] and params["background"] == [[1, 2, 3]]
    assert params["boxes"] == [{"label": "liver", "min": [2, 3, 4], "max": [5, 9, 4]}]
    assert params["scribbles"][0]["label"] == "background"
    assert params["lassos"] == [{"label": "liver", "axis": 2, "points": [[0, 0, 2], [0, 4, 2], [4, 4, 2]]}]
    assert book.params("Spleen") == {"spleen": [[3, 3, 3]], "background": []}
    assert book.undo("Liver").kind == "lasso" and book.count("Liver") == 4
    assert "lassos" not in book.params("Liver")
    book.clear("Liver")
    assert book.undo("Liver") is None and book.count("Spleen") == 1


@pytest.mark.parametrize(("kind", "points"), [("dot", [[1, 2, 3]]), ("foreground", [[1, 2]]),
                                              ("foreground", [[1, 2, 3], [4, 5, 6]]), ("box", [[1, 2, 3]]),
                                              ("lasso", [[1, 2, 3], [1, 2, 4]])])
def test_malformed_prompts_are_refused(kind, points):
    with pytest.raises(LabelZooLibError):
        PromptBook().add("Liver", kind, points)


def test_resample_follows_geometry_and_merge_keeps_other_segments():
    answer = np.zeros((4, 4, 2), dtype=np.uint8)
    answer[0, 1, 0] = 3
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 3.0  # i -> 3 - i in RAS: the same physical grid, stored mirrored
    on_grid = resample_to(answer, flipped, np.eye(4), (4, 4, 2))
    assert on_grid[3, 1, 0] == 3 and on_grid.sum() == 3
    current = np.zeros((4, 4, 2), dtype=np.uint8)
    current[0, 0, 0] = 5  # another segment
    current[2, 2, 1] = 7  # the old drawing of this segment
    merged = merge_segment(current, on_grid, answer_value=3, segment_value=7)
    assert merged[0, 0, 0] == 5 and merged[2, 2, 1] == 0 and merged[3, 1, 0] == 7
    with pytest.raises(LabelZooLibError, match="resample"):
        merge_segment(current, answer[:3], 3, 7)


def test_region_answer_is_merged_at_its_place_by_geometry():
    from LabelZooLib import merge_region, resample_region

    volume = np.diag([2.0, 2.0, 3.0, 1.0])  # the segmentation's grid: 2 x 2 x 3 mm
    current = np.zeros((10, 10, 6), dtype=np.uint8)
    current[0, 0, 0] = 5  # another segment, outside the region
    current[1:9, 1:9, 1] = 1  # the old drawing of this segment: outside the region it stays
    region = np.zeros((3, 3, 2), dtype=np.uint8)
    region[1, 1, :] = 2  # the answer's label value 2
    region_affine = volume.copy()
    region_affine[:3, 3] = volume[:3, :3] @ [4, 5, 2]  # the region starts at voxel (4, 5, 2)
    slices, values, covered = resample_region(region, region_affine, volume, current.shape)
    assert [(s.start, s.stop) for s in slices] == [(4, 7), (5, 8), (2, 4)] and covered.all()
    merged = merge_region(current, region, region_affine, volume, answer_value=2, segment_value=1)
    assert merged[0, 0, 0] == 5 and merged[5, 6, 2] == 1 and merged[5, 6, 3] == 1
    assert (merged[:, :, 1] == current[:, :, 1]).all()  # outside the region: unchanged
    assert merged[4, 5, 2] == 0 and (merged[4:7, 5:8, 2:4] == 1).sum() == 2
    # a whole-volume answer is the special case: the same as merge_segment
    full = np.zeros_like(current)
    full[2, 2, 2] = 2
    assert (merge_region(current, full, volume, volume, 2, 1) == merge_segment(current, full, 2, 1)).all()


def test_scribble_and_lasso_from_drawn_points():
    from LabelZooLib import lasso_contour, stroke_voxels

    stroke = stroke_voxels([[0.2, 0, 3], [4, 2.1, 3], [4, 2, 3]])
    assert stroke[0] == [0, 0, 3] and stroke[-1] == [4, 2, 3] and len(stroke) == len({tuple(p) for p in stroke})
    steps = [max(abs(a - b) for a, b in zip(p, q, strict=True)) for p, q in zip(stroke, stroke[1:], strict=False)]
    assert set(steps) == {1}  # connected, one voxel per step
    points, axis = lasso_contour([[2, 10.4, 1], [6, 10.6, 5], [9, 9.8, 2], [3, 10.1, 8]])
    assert axis == 1 and {p[1] for p in points} == {10}
    with pytest.raises(LabelZooLibError, match="one slice"):
        lasso_contour([[0, 0, 0], [5, 5, 5], [9, 0, 9]])
    with pytest.raises(LabelZooLibError, match="3 contour points"):
        lasso_contour([[0, 0, 0], [1, 1, 0]])


def test_refine_sends_the_current_mask_as_prior():
    from LabelZooLib import prior_labelmap

    book = PromptBook()
    book.add("Liver", "foreground", [[3, 4, 5]])
    assert "prior" not in book.params("Liver")
    book.set_refine("Liver", True)
    assert book.params("Liver")["prior"] == ["liver"] and "prior" not in book.params("Spleen")
    mask = np.zeros((3, 3, 2), bool)
    mask[1, 1, 1] = True
    up = prior_labelmap(mask, 3)
    assert up.dtype == np.uint8 and up.sum() == 3 and up[1, 1, 1] == 3
    with pytest.raises(LabelZooLibError):
        prior_labelmap(mask, 0)
