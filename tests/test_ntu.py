"""NTU naming and the published benchmark split sizes."""

import pytest

from rgbpose import ntu


def test_parse_name_fields_and_label():
    s = ntu.parse_name("S017C003P020R002A060")
    assert (s.setup, s.camera, s.performer, s.replication, s.action) == (17, 3, 20, 2, 60)
    assert s.label == 59
    assert s.two_person
    assert str(s) == "S017C003P020R002A060"
    assert not ntu.parse_name("S001C001P001R001A049").two_person
    assert ntu.parse_name("S018C001P001R001A106").two_person


@pytest.mark.parametrize(
    "bad",
    [
        "S001C001P001R001A001_rgb",
        "../S001C001P001R001A001",
        "S001C001P001R001A001/x",
        "s001c001p001r001a001",
        "S001C004P001R001A001",  # camera 4
        "S001C001P001R003A001",  # replication 3
        "S001C001P001R001A121",  # action 121
        "S01C001P001R001A001",
        "",
    ],
)
def test_parse_name_rejects(bad):
    with pytest.raises(ValueError, match="NTU sample name"):
        ntu.parse_name(bad)
    assert not ntu.is_valid_name(bad)


def test_split_rules_on_hand_made_names():
    names = [
        "S001C001P001R001A001",  # performer 1 (train xsub), camera 1 (val xview), odd setup
        "S002C002P003R001A002",  # performer 3 (val), camera 2 (train), even setup
        "S003C003P045R002A061",  # A61: NTU 120 only; performer 45 train in ntu120 xsub
        "S001C002P005R002A008",  # in the missing-skeleton list -> excluded
    ]
    sp60 = ntu.make_splits(names, "ntu60", ["xsub", "xview"])
    assert sp60 == {
        "xsub_train": ["S001C001P001R001A001"],
        "xsub_val": ["S002C002P003R001A002"],
        "xview_train": ["S002C002P003R001A002"],
        "xview_val": ["S001C001P001R001A001"],
    }
    sp120 = ntu.make_splits(names, "ntu120", ["xsub", "xset"])
    assert sp120["xsub_train"] == ["S001C001P001R001A001", "S003C003P045R002A061"]
    assert sp120["xsub_val"] == ["S002C002P003R001A002"]
    assert sp120["xset_train"] == ["S002C002P003R001A002"]
    assert sp120["xset_val"] == ["S001C001P001R001A001", "S003C003P045R002A061"]
    with pytest.raises(ValueError, match="xset"):
        ntu.make_splits(names, "ntu60", ["xset"])


def test_published_split_sizes():
    names = ntu.recorded_samples()
    assert len(names) == 114_480
    assert len(ntu.missing_skeletons()) == 535
    sizes60 = {k: len(v) for k, v in ntu.make_splits(names, "ntu60", ["xsub", "xview"]).items()}
    assert sizes60 == {
        "xsub_train": 40_091,
        "xsub_val": 16_487,
        "xview_train": 37_646,
        "xview_val": 18_932,
    }
    sizes120 = {k: len(v) for k, v in ntu.make_splits(names, "ntu120", ["xsub", "xset"]).items()}
    assert sizes120 == {
        "xsub_train": 63_026,
        "xsub_val": 50_919,
        "xset_train": 54_468,
        "xset_val": 59_477,
    }


def test_class_names():
    names = ntu.class_names()
    assert len(names) == 120
    assert names[0] == "drink water"
    assert names[ntu.parse_name("S001C001P001R001A003").label] == "brushing teeth"
