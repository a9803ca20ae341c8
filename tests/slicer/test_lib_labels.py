"""LabelZooLib.labels: label table, stable colours, segment <-> label-map conversion and merging."""

import numpy as np
import pytest
from LabelZooLib import LabelZooLibError
from LabelZooLib.labels import (
    ANATOMY_COLORS,
    LabelTable,
    assign_values,
    labelmap_to_segments,
    merge_labelmap,
    remap_labelmap,
    segments_to_labelmap,
    stable_color,
    value_mapping,
)


def test_table_from_server_dict_skips_background_and_orders_by_value():
    table = LabelTable.from_server({"liver": 6, "background": 0, "spleen": 1, "kidney_left": 3})
    assert table.names == ["spleen", "kidney_left", "liver"]
    assert table.values == [1, 3, 6]
    assert table.value_of("liver") == 6 and table.name_of(3) == "kidney_left"


def test_table_from_server_list_numbers_from_one():
    table = LabelTable.from_server(["background", "spleen", "liver"])
    assert table.to_names() == {"spleen": 1, "liver": 2}


@pytest.mark.parametrize("labels", [{"spleen": 1, "liver": 1}, {"spleen": -2}, {"spleen": 1.5}, {"spleen": "x"},
                                    {"spleen": float("nan")}])
def test_table_rejects_bad_values_naming_the_label(labels):
    with pytest.raises(LabelZooLibError, match="spleen|liver"):
        LabelTable.from_server(labels)


def test_add_is_idempotent_and_refuses_conflicts():
    table = LabelTable.from_server({"spleen": 1})
    assert table.add("spleen").value == 1
    assert table.add("tumor").value == 2
    with pytest.raises(LabelZooLibError, match="already has value 1"):
        table.add("spleen", 5)
    with pytest.raises(LabelZooLibError, match="already 'spleen'"):
        table.add("lesion", 1)
    with pytest.raises(LabelZooLibError, match="background"):
        table.add("lesion", 0)
    with pytest.raises(LabelZooLibError, match="known labels"):
        table.value_of("heart")


def test_colours_are_stable_known_for_anatomy_and_distinct_otherwise():
    spleen = tuple(round(c / 255, 4) for c in ANATOMY_COLORS["spleen"])
    assert stable_color("Spleen") == stable_color("spleen") == spleen
    assert stable_color("left_kidney") == stable_color("Left Kidney")
    # fixed values: the colour of a name must not change between sessions or machines
    assert stable_color("my structure") == (0.779, 0.5153, 0.1175)
    colours = {stable_color(f"structure {i}") for i in range(20)}
    assert len(colours) == 20
    assert all(0.0 <= c <= 1.0 for colour in colours for c in colour)


def test_label_info_round_trip():
    table = LabelTable.from_server({"spleen": 1, "liver": 6})
    info = table.to_label_info()
    assert info[0] == {"name": "spleen", "idx": 1, "color": list(stable_color("spleen"))}
    assert LabelTable.from_label_info(info) == table
    with pytest.raises(LabelZooLibError, match="needs 'name' and 'idx'"):
        LabelTable.from_label_info([{"name": "x"}])


def test_assign_values_keeps_known_and_extends_table():
    table = LabelTable.from_server({"spleen": 1, "liver": 6})
    values = assign_values(["liver", "tumor", "spleen", "cyst"], table)
    assert values == {"liver": 6, "tumor": 7, "spleen": 1, "cyst": 8}
    assert table.names == ["spleen", "liver", "tumor", "cyst"]


def test_segments_to_labelmap_and_back():
    table = LabelTable.from_server({"spleen": 1, "liver": 6})
    a = np.zeros((4, 5, 6), bool)
    a[0] = True
    b = np.zeros((4, 5, 6), bool)
    b[:2] = True
    labelmap = segments_to_labelmap({"spleen": a, "tumor": b}, table)
    assert labelmap.dtype == np.uint8
    assert (labelmap[0] == 7).all(), "overlap: the later segment wins"
    assert (labelmap[1] == 7).all() and (labelmap[2:] == 0).all()
    segments = labelmap_to_segments(labelmap, table)
    assert set(segments) == {"tumor"}
    assert segments["tumor"].sum() == b.sum()


def test_segments_to_labelmap_errors():
    with pytest.raises(LabelZooLibError, match="at least one"):
        segments_to_labelmap({}, LabelTable())
    with pytest.raises(LabelZooLibError, match="differ in shape"):
        segments_to_labelmap({"a": np.zeros((2, 2)), "b": np.zeros((3, 2))}, LabelTable())


def test_labelmap_to_segments_names_unknown_values():
    table = LabelTable.from_server({"spleen": 1})
    segments = labelmap_to_segments(np.array([[0, 1], [9, 9]]), table)
    assert set(segments) == {"spleen", "label_9"} and table.value_of("label_9") == 9


def test_value_mapping_by_name_and_remap():
    model = LabelTable.from_server({"spleen": 1, "kidney": 2, "liver": 3})
    session = LabelTable.from_server({"liver": 1, "spleen": 2, "tumor": 3})
    mapping = value_mapping(model, session)
    assert mapping == {1: 2, 2: 4, 3: 1}  # kidney's value 2 is taken in the session: it gets the next free one
    assert session.value_of("kidney") == 4
    remapped = remap_labelmap(np.array([0, 1, 2, 3, 5]), mapping)
    assert remapped.tolist() == [0, 2, 4, 1, 0]
    assert remap_labelmap(np.array([0, 1, 5]), {1: 2}, keep_unmapped=True).tolist() == [0, 2, 5]
    assert remap_labelmap(np.array([0.0, 1.0]), {1: 3}).tolist() == [0, 3]
    with pytest.raises(LabelZooLibError, match="whole numbers"):
        remap_labelmap(np.array([0.5]), {})


def test_merge_modes():
    current = np.array([1, 1, 2, 2, 0, 0])  # annotator drew label 1 and label 2
    incoming = np.array([0, 1, 1, 0, 3, 0])  # the model returns labels 1 and 3
    # replace: label 1 and 3 come from the model; label 2 stays except where the model's labels cover it
    assert merge_labelmap(current, incoming, "replace").tolist() == [0, 1, 1, 2, 3, 0]
    # fill: only background voxels change
    assert merge_labelmap(current, incoming, "fill").tolist() == [1, 1, 2, 2, 3, 0]
    assert merge_labelmap(current, incoming, "overwrite").tolist() == incoming.tolist()
    # restrict to label 3: label 1 of the annotator stays untouched
    assert merge_labelmap(current, incoming, "replace", labels=[3]).tolist() == [1, 1, 2, 2, 3, 0]
    assert merge_labelmap(None, incoming).tolist() == incoming.tolist()
    assert current.tolist() == [1, 1, 2, 2, 0, 0], "inputs are not modified"


def test_merge_errors_name_the_problem():
    with pytest.raises(LabelZooLibError, match="merge mode 'union'"):
        merge_labelmap(None, np.zeros(3), "union")
    with pytest.raises(LabelZooLibError, match=r"shape \(3,\).*shape \(4,\)"):
        merge_labelmap(np.zeros(4), np.zeros(3))
