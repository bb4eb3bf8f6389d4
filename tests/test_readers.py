"""Readers: every format on tiny hand-written fixtures, writers, and the one-line error messages."""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feedgan.data.readers import FORMATS, detect_format, read, read_social, write_recbole, write_table
from feedgan.data.schema import DataError

FIX = Path(__file__).parent / "fixtures"


def pairs(inter):
    return list(zip(inter.frame["user"].tolist(), inter.frame["item"].tolist()))


@contextlib.contextmanager
def raises(*fragments, match_file=None):
    """A DataError whose message is one line containing every fragment (and the file, if given)."""
    with pytest.raises(DataError) as info:
        yield info
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments + ((str(match_file),) if match_file else ()):
        assert frag in msg, f"{frag!r} not in {msg!r}"


# ------------------------------------------------------------------------------- generic tables
def test_csv_aliases_blank_line_and_rating_action():
    inter = read(FIX / "generic" / "aliases.csv")
    f = inter.frame
    assert len(inter) == 3 and pairs(inter) == [(1, 10), (1, 11), (2, 10)]
    assert f["weight"].tolist() == [4.5, 3.0, 5.0] and f["weight"].dtype == np.float32
    assert f["timestamp"].tolist() == [1600000000, 1600000060, 1600000120]
    assert inter.actions == ["rate"]  # weight came from a "rating" column


HEADERLESS = FIX / "generic" / "headerless.csv"  # user, item, yyyymmdd, rating, helpful votes; no header


def test_headerless_csv_columns_by_position_extra_columns_ignored():
    inter = read(HEADERLESS, "csv", header=False, columns={"user": 0, "item": 1, "weight": 3})
    rows = [ln.split(",") for ln in HEADERLESS.read_text().splitlines()]
    assert pairs(inter) == [(int(r[0]), int(r[1])) for r in rows]  # the first line is a rating, not a header
    assert inter.frame["weight"].tolist() == [float(r[3]) for r in rows]
    assert set(inter.frame.columns) <= {"user", "item", "action", "weight"}  # columns 2 and 4 are not read


def test_positions_also_work_with_a_header(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("a,b,c\n1,10,4\n2,11,5\n")
    inter = read(path, "csv", columns={"user": 0, "item": 1, "weight": 2})
    assert pairs(inter) == [(1, 10), (2, 11)] and inter.frame["weight"].tolist() == [4.0, 5.0]


@pytest.mark.parametrize("sep,given", [(";", ";"), ("|", "|"), ("whitespace", " \t ")])
def test_sep_any_character_or_whitespace(tmp_path, sep, given):
    path = tmp_path / "log.txt"
    path.write_text("\n".join(given.join(r) for r in [["uid", "pid", "rating"], ["1", "10", "4"], ["2", "11", "5"]]))
    inter = read(path, "csv", sep=sep, columns={"user": "uid", "item": "pid"})
    assert pairs(inter) == [(1, 10), (2, 11)] and inter.frame["weight"].tolist() == [4.0, 5.0]


def test_headerless_line_numbers_and_bad_positions(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("1,10,4\n2,11,five\n")
    with raises("line 2", "five", match_file=path):
        read(path, "csv", header=False, columns={"user": 0, "item": 1, "weight": 2})
    with raises("position 3", "3 columns", match_file=path):
        read(path, "csv", header=False, columns={"user": 0, "item": 3})
    with raises("--columns user=0", match_file=path):
        read(path, "csv", header=False)
    with raises("header= does not apply"):
        read(path, "uir", header=False)
    with raises("separator"):
        read(path, "csv", sep="::")


def test_a_header_that_looks_like_data_is_refused():
    """Read with a header, the first rating would become column names and be lost."""
    with raises("line 1", "looks like data", "--no-header --columns user=0,item=1", match_file=HEADERLESS):
        read(HEADERLESS, "csv")
    with raises("looks like data", match_file=HEADERLESS):  # the fields mapped to user and item are numbers
        read(HEADERLESS, "csv", columns={"user": 0, "item": 1})


def test_tsv_column_mapping_and_iso_dates():
    inter = read(FIX / "generic" / "custom.tsv",
                 columns={"user": "member", "item": "post", "action": "event", "timestamp": "when"})
    f = inter.frame
    assert pairs(inter) == [(7, 100), (7, 101), (8, 100)]
    assert f["action"].tolist() == ["like", "comment", "view"]
    assert f["timestamp"].tolist() == [1614592800, 1614593100, 1614643200]
    assert f["weight"].tolist() == [1.0, 1.0, 1.0]


def test_iso_dates(tmp_path):
    f = tmp_path / "iso.csv"
    f.write_text("user,item,timestamp\n1,2,2021-03-02T00:00:00Z\n")
    assert read(f).frame["timestamp"].tolist() == [1614643200]


def test_jsonl_string_ids_and_social_files():
    inter = read(FIX / "generic" / "log.jsonl", social=FIX / "generic" / "social.csv")
    assert pairs(inter) == [("alice", "p1"), ("bob", "p1"), ("alice", "p2")]
    assert inter.frame["action"].tolist() == ["view", "share", "like"]
    assert inter.social[["src", "dst"]].values.tolist() == [[1, 2], [2, 1]]
    edges = read_social(FIX / "generic" / "edges.txt")
    assert edges[["src", "dst"]].values.tolist() == [[1, 2], [2, 1], [1, 3]]
    assert edges["weight"].tolist() == [1.0, 1.0, 1.0]


def test_auto_detection():
    expect = {"generic/aliases.csv": "csv", "generic/custom.tsv": "tsv", "generic/log.jsonl": "jsonl",
              "movielens/ml-100k": "movielens", "movielens/ml-1m/ratings.dat": "movielens",
              "lastfm-hetrec": "lastfm-hetrec", "lightgcn": "lightgcn", "cfgan": "cfgan",
              "cfgan/Toy.test": "cfgan", "filmtrust": "filmtrust", "ciao": "filmtrust",
              "kuairand/log_standard_toy.csv": "kuairand", "kuairand/log_standard_real_layout.csv": "kuairand",
              "recbole": "recbole", "recbole/toy.inter": "recbole", "uir/split": "uir",
              "multibehaviour": "multi-behaviour"}
    for rel, fmt in expect.items():
        assert detect_format(FIX / rel) == fmt, rel
    assert read(FIX / "kuairand" / "log_standard_toy.csv").notes["impressions_without_action"] == 2
    with raises("cannot tell the format", "movielens", match_file="with_ts.txt"):
        read(FIX / "uir" / "with_ts.txt")


# -------------------------------------------------------------------------------- named formats
def test_movielens_100k_folder_and_1m_file():
    inter = read(FIX / "movielens" / "ml-100k", "movielens")
    f = inter.frame
    assert len(inter) == 4 and inter.actions == ["rate"]
    assert f["weight"].tolist() == [3, 5, 4, 1] and f["timestamp"].iloc[-1] == 881000300
    one_m = read(FIX / "movielens" / "ml-1m", "movielens")
    assert pairs(one_m) == [(1, 1193), (1, 661), (2, 1193)]
    assert one_m.frame["timestamp"].tolist() == [978300760, 978302109, 978298413]


def test_lastfm_hetrec_counts_and_friends():
    inter = read(FIX / "lastfm-hetrec", "lastfm-hetrec")
    assert pairs(inter) == [(2, 51), (2, 52), (3, 51)]
    assert inter.actions == ["listen"] and inter.frame["weight"].tolist() == [1200, 80, 7]
    assert not inter.has_timestamps
    assert inter.social[["src", "dst"]].values.tolist() == [[2, 3], [3, 2]]


def test_lightgcn_folder_parts_and_single_file():
    inter = read(FIX / "lightgcn", "lightgcn")
    f = inter.frame
    assert len(inter) == 10 and inter.actions == ["interact"]
    assert f["part"].value_counts().to_dict() == {"train": 6, "valid": 2, "test": 2}
    assert pairs(inter)[:6] == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (2, 1)]
    assert inter.notes["users_without_items"] == 1  # "1" alone on a line in valid.txt
    single = read(FIX / "lightgcn" / "test.txt", "lightgcn")
    assert pairs(single) == [(0, 4), (1, 0)] and not single.has_parts


def test_cfgan_any_of_train_test_or_prefix():
    for p in ("Toy.train", "Toy.test", "Toy"):
        inter = read(FIX / "cfgan" / p, "cfgan")
        assert len(inter) == 5 and inter.actions == ["rate"]
        assert inter.frame["part"].tolist() == ["train"] * 3 + ["test"] * 2
        assert inter.frame["weight"].tolist() == [5, 3, 4, 2, 1]


def test_filmtrust_and_ciao_ratings_plus_trust():
    ft = read(FIX / "filmtrust", "filmtrust")
    assert pairs(ft) == [(1, 1), (1, 2), (2, 1), (3, 2)]
    assert ft.frame["weight"].tolist() == [2, 3.5, 0.5, 4]
    assert ft.social[["src", "dst", "weight"]].values.tolist() == [[1, 2, 1], [2, 3, 1]]
    ciao = read(FIX / "ciao", "ciao")  # five columns, only the first three are used
    assert pairs(ciao) == [(10, 100), (10, 101), (11, 100)] and ciao.frame["weight"].tolist() == [4, 5, 2]
    assert len(ciao.social) == 2


@pytest.mark.parametrize("name", ["ciao-tang", "epinions-tang"])
def test_tang_layout_reads_the_fourth_column_comma_or_whitespace(name):
    # user, product, category, rating, helpfulness[, time]: categories 7, 7, 3, 21 are not ratings
    comma = read(FIX / "ciao" / "tang", name)
    assert pairs(comma) == [(10, 100), (10, 101), (11, 100), (12, 102)]
    assert comma.frame["weight"].tolist() == [4, 5, 2, 3]
    assert comma.frame["timestamp"].tolist() == [1300000000, 1300000100, 1300000200, 1300000300]
    assert comma.social[["src", "dst"]].values.tolist() == [[10, 11], [11, 12]]
    spaced = read(FIX / "ciao" / "tang_rating.txt", name)
    assert spaced.frame["weight"].tolist() == [4, 5, 2, 3] and not spaced.has_timestamps


def test_ciao_refuses_a_category_read_as_rating():
    # the Tang file read as the LibRec layout: column 3 holds category 7 on line 1
    with pytest.raises(DataError, match=r"rating\.txt, line 1: rating 7 in column 3 is outside the 1-5 scale"
                                        r".*ciao-tang"):
        read(FIX / "ciao" / "tang", "ciao")
    with pytest.raises(DataError, match=r"line 1: rating 7 in column 3.*epinions-tang"):
        read(FIX / "ciao" / "tang_rating.txt", "epinions")


def test_tang_layout_refuses_a_rating_off_the_scale(tmp_path):
    f = tmp_path / "rating.txt"
    f.write_text("1 2 3 4 5\n1 3 3 0 5\n")
    with pytest.raises(DataError, match=r"line 2: rating 0 in column 4 .*use ciao or epinions"):
        read(f, "ciao-tang")


def test_multi_behaviour_actions_parts_and_counts():
    inter = read(FIX / "multibehaviour", "multi-behaviour")
    f = inter.frame
    assert inter.actions == ["view", "buy", "cart"] and not inter.has_timestamps
    counts = f.groupby(["action", "part"], observed=True).size().to_dict()
    assert counts == {("buy", "train"): 5, ("buy", "test"): 3, ("cart", "train"): 6, ("cart", "test"): 3,
                      ("view", "train"): 13, ("view", "test"): 4}  # counted by hand from the fixture files
    assert len(inter) == 34 and f["weight"].tolist() == [1.0] * 34
    # sub-folders in name order (buy, cart, view), each its train then test rows, in file order
    assert f["action"].tolist()[:8] == ["buy"] * 8 and f["part"].tolist()[:8] == ["train"] * 5 + ["test"] * 3
    assert pairs(inter)[:8] == [(0, 1), (0, 2), (1, 3), (2, 0), (2, 4), (0, 3), (1, 0), (2, 1)]
    assert pairs(inter)[-4:] == [(0, 5), (1, 2), (2, 3), (3, 4)] and f["action"].iloc[-1] == "view"
    assert inter.notes["users_without_items"] == 1  # "3" alone in cart/train.txt
    for name in ("mbgcn", "multi_behaviour", "auto"):
        pd.testing.assert_frame_equal(read(FIX / "multibehaviour", name).frame, f)


def test_multi_behaviour_valid_files_ignored_folders_and_errors(tmp_path):
    root = tmp_path / "mb"
    shutil.copytree(FIX / "multibehaviour", root)
    (root / "buy").rename(root / "Buy")  # action names are lower-cased
    (root / "Buy" / "valid.txt").write_text("0\t4\n")
    (root / "notes").mkdir()  # no train.txt: skipped
    (root / "notes" / "README.txt").write_text("not data\n")
    (root / "SOURCE.md").write_text("a file at the top is not a behaviour\n")
    inter = read(root)
    f = inter.frame
    assert inter.actions == ["view", "buy", "cart"] and len(inter) == 35
    assert f[f["action"] == "buy"]["part"].value_counts().to_dict() == {"train": 5, "valid": 1, "test": 3}
    (root / "cart" / "test.txt").unlink()
    with raises("no test.txt in this folder", match_file=root / "cart"):
        read(root, "multi-behaviour")
    (root / "cart" / "test.txt").write_text("\n")
    with raises("file is empty", match_file=root / "cart" / "test.txt"):
        read(root, "multi-behaviour")
    empty = tmp_path / "empty"
    empty.mkdir()
    with raises("no behaviour sub-folder with a train.txt", "view/, cart/, buy/", match_file=empty):
        read(empty, "mbgcn")
    (empty / "notes").mkdir()
    with raises("no behaviour sub-folder with a train.txt", match_file=empty):
        read(empty, "multi-behaviour")
    with raises("cannot tell the format", match_file=empty):
        read(empty)
    with raises("is a folder, not a file", match_file=FIX / "lightgcn" / "train.txt"):
        read(FIX / "lightgcn" / "train.txt", "multi-behaviour")
    assert detect_format(FIX / "lightgcn") == "lightgcn"  # train.txt directly inside: not multi-behaviour


REAL_LAYOUT = FIX / "kuairand" / "log_standard_real_layout.csv"  # the header of KuaiRand-1K/Pure log_*.csv


def test_kuairand_real_layout():
    assert REAL_LAYOUT.read_text().split("\n")[0].split(",") == [
        "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow", "is_comment",
        "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms", "profile_stay_time",
        "comment_stay_time", "is_profile_enter", "is_rand", "tab"]
    inter = read(REAL_LAYOUT, "kuairand")
    f = inter.frame
    counts = f["action"].value_counts().to_dict()
    assert counts == {"impression": 10, "view": 6, "long_view": 4, "like": 2, "follow": 2, "comment": 2,
                      "share": 2, "profile": 2, "hate": 1}  # counted by hand; one impression per log line
    assert len(inter) == 31 and inter.notes["impressions_without_action"] == 3  # data lines 2, 9 and 11
    # row-major: each line's impression first, then its flags in header order
    assert f["action"].tolist()[:6] == ["impression", "impression", "view", "long_view", "impression", "view"]
    full = f.iloc[-9:-1]  # line 10 has every flag set
    assert full["action"].tolist() == ["impression", "view", "like", "follow", "comment", "share", "long_view",
                                       "profile"] and set(pairs(inter)[-9:-1]) == {(513, 875519)}
    assert pairs(inter)[0] == (0, 4354972) and f["action"].iloc[0] == "impression"  # an all-zero line
    assert f[f["action"] == "hate"][["user", "item"]].values.tolist() == [[27, 2058916]]
    log = pd.read_csv(REAL_LAYOUT)
    shown = f[f["action"] == "impression"]
    assert pairs(inter.with_frame(shown)) == list(zip(log["user_id"], log["video_id"]))
    assert shown["timestamp"].tolist() == (log["time_ms"] // 1000).tolist()
    assert f.groupby(["user", "item"])["timestamp"].nunique().max() == 1  # flags share their line's time
    assert f["weight"].tolist() == [1.0] * 31 and not inter.has_parts


def test_kuairand_date_hourmin_is_beijing_time(tmp_path):
    log = pd.read_csv(REAL_LAYOUT)
    no_ms = tmp_path / "log_random_real.csv"
    log.drop(columns="time_ms").to_csv(no_ms, index=False)
    with_ms, without = read(REAL_LAYOUT).frame, read(no_ms, "kuairand").frame
    # hourmin is the Beijing (UTC+8) hour of time_ms: both give the same UTC hour
    assert without["timestamp"].tolist() == (with_ms["timestamp"] // 3600 * 3600).tolist()
    pd.testing.assert_frame_equal(without.drop(columns="timestamp"), with_ms.drop(columns="timestamp"))
    toy = tmp_path / "log_random_toy.csv"  # only some columns: date (YYYYMMDD) + hourmin (HHMM)
    toy.write_text("user_id,video_id,date,hourmin,is_click,is_like\n1,2,20220408,1630,1,0\n1,3,20220408,1631,0,0\n")
    inter = read(toy, "kuairand")  # 16:30 Beijing = 08:30 UTC
    assert inter.frame["action"].tolist() == ["impression", "view", "impression"]
    assert inter.frame["timestamp"].tolist() == [1649406600] * 2 + [1649406660]
    assert inter.notes["impressions_without_action"] == 1


@pytest.mark.parametrize("hourmin", ["2400", "1275", "-5", "12.5"])
def test_kuairand_hourmin_outside_a_day_is_refused(tmp_path, hourmin):
    toy = tmp_path / "log_random_toy.csv"
    toy.write_text(f"user_id,video_id,date,hourmin,is_click\n1,2,20220408,1630,1\n1,3,20220408,{hourmin},0\n")
    with raises("not a time of day HHMM", "line 3", match_file=toy):
        read(toy, "kuairand")


def test_kuairand_flags_become_actions():
    inter = read(FIX / "kuairand" / "log_standard_toy.csv", "kuairand")
    f = inter.frame
    assert f["action"].tolist() == ["impression", "view", "like", "long_view", "impression",
                                    "impression", "view", "follow", "comment", "share", "profile", "impression"]
    assert pairs(inter) == [(0, 501)] * 4 + [(0, 502)] + [(1, 501)] * 6 + [(1, 503)]
    assert f["timestamp"].tolist() == [1649404800] * 4 + [1649404860] + [1649466000] * 6 + [1649466060]
    assert inter.notes["impressions_without_action"] == 2


def test_kuairand_flag_values_and_ignored_columns(tmp_path):
    lines = REAL_LAYOUT.read_text().split("\n")
    kr = tmp_path / "log_standard_bad.csv"

    def with_line(no, old, new):  # the real-layout fixture with file line ``no`` edited
        edited = list(lines)
        assert old in edited[no - 1]
        edited[no - 1] = edited[no - 1].replace(old, new, 1)
        kr.write_text("\n".join(edited))

    with_line(6, "2058916,20220413,1200,1649823210056,0,0,0,0,0,1,", "2058916,20220413,1200,1649823210056,0,0,0,0,0,2,")
    with raises("is_hate is '2', expected 0 or 1", "line 6", "flags must be 0 or 1", match_file=kr):
        read(kr)
    with_line(4, "1649810112407,1,1,", "1649810112407,1,yes,")
    with raises("is_like is 'yes'", "line 4", match_file=kr):
        read(kr)
    with_line(9, "1649941801777,0,", "1649941801777,,")
    with raises("is_click is empty", "line 9", match_file=kr):
        read(kr)
    with_line(3, "1649810048838,1,", "1649810048838,-1,")
    with raises("is_click is '-1'", "line 3", match_file=kr):
        read(kr)
    # play/stay times, is_rand and tab are not flags: odd or empty values there are ignored
    with_line(2, ",0,70100,0,0,0,0,1", ",,70100,x,0,0,maybe,")
    assert read(kr).frame.equals(read(REAL_LAYOUT).frame)


def test_recbole_import_and_round_trip(tmp_path):
    inter = read(FIX / "recbole" / "toy.inter", "recbole")
    assert pairs(inter) == [(1, 10), (1, 11), (2, 10)] and inter.actions == ["rate"]
    assert inter.frame["weight"].tolist() == [4, 2.5, 5] and inter.frame["timestamp"].iloc[0] == 881250949
    for src in (read(FIX / "kuairand" / "log_standard_toy.csv"), read(FIX / "lightgcn"),
                read(FIX / "generic" / "log.jsonl"), read(FIX / "multibehaviour")):
        out = tmp_path / "x.inter"
        write_recbole(src, out)
        assert out.read_text().split("\n")[0].startswith("user_id:token\titem_id:token\taction:token\tweight:float")
        pd.testing.assert_frame_equal(read(out, "recbole").frame, src.frame)


def test_uir_single_file_and_split_folder():
    inter = read(FIX / "uir" / "with_ts.txt", "uir")
    assert pairs(inter) == [(5, 9), (5, 8), (6, 9)] and inter.frame["timestamp"].iloc[2] == 1500000600
    split = read(FIX / "uir" / "split", "irgan")
    assert split.frame["part"].tolist() == ["train"] * 3 + ["test"] * 2
    assert split.frame["weight"].tolist() == [5, 3, 4, 4, 2]


def test_formats_registry():
    assert {"csv", "tsv", "parquet", "jsonl", "movielens", "lastfm-hetrec", "lightgcn", "cfgan", "filmtrust",
            "ciao", "kuairand", "recbole", "uir", "multi-behaviour", "mbgcn"} <= set(FORMATS)


# -------------------------------------------------------------------------------------- writers
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".jsonl"])
def test_write_table_round_trip(tmp_path, suffix):
    for src in (read(FIX / "lightgcn"), read(FIX / "generic" / "log.jsonl"),
                read(FIX / "kuairand" / "log_standard_toy.csv"), read(FIX / "multibehaviour"), read(REAL_LAYOUT)):
        out = tmp_path / f"t{suffix}"
        write_table(src, out)
        pd.testing.assert_frame_equal(read(out).frame, src.frame)


def test_writes_are_atomic(tmp_path, monkeypatch):
    inter = read(FIX / "movielens" / "ml-100k")
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def broken(self, buf, *a, **k):
        buf.write("user,item\n1,")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    for write, path in ((write_table, target), (write_recbole, tmp_path / "new.inter")):
        with pytest.raises(RuntimeError):
            write(inter, path)
    assert target.read_text() == "old\n"  # the old file survives, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no half-written file, no temp file
    with raises("cannot write a .xlsx file"):
        write_table(inter, tmp_path / "t.xlsx")


# --------------------------------------------------------------------------------- bad inputs
def test_unknown_format_and_missing_path(tmp_path):
    with raises("unknown format 'movielen'", "lightgcn, cfgan", match_file=FIX):
        read(FIX, "movielen")
    with raises("no such file or folder", match_file=tmp_path / "nope.csv"):
        read(tmp_path / "nope.csv")
    assert detect_format(FIX / "cfgan" / "Toy") == "cfgan"
    with raises("CFGAN split Nope.train not found", "uir"):
        read(tmp_path / "Nope", "cfgan")
    with raises("columns= does not apply to format movielens"):
        read(FIX / "movielens" / "ml-100k", "movielens", columns={"user": "u"})


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("\n  \n")
    with raises("file is empty", match_file=empty):
        read(empty)
    header = tmp_path / "header.csv"
    header.write_text("user,item\n")
    with raises("no interactions found", match_file=header):
        read(header)


def test_missing_and_misnamed_columns(tmp_path):
    bad = tmp_path / "cols.csv"
    bad.write_text("who,what\n1,2\n")
    with raises("missing column(s) ['user', 'item']", "--columns", match_file=bad):
        read(bad)
    with raises("column 'uid' (for user) not found", match_file=bad):
        read(bad, columns={"user": "uid"})
    with raises("unknown column name 'usr'"):
        read(bad, columns={"usr": "who"})


def test_bad_weight_and_nan_name_the_line(tmp_path):
    text = tmp_path / "w.csv"
    text.write_text("user,item,weight\n1,2,3\n\n1,3,abc\n")
    with raises("weight 'abc' is not a number", "line 4", match_file=text):
        read(text)
    nan = tmp_path / "nan.tsv"
    nan.write_text("user\titem\tweight\n1\t2\t3\n1\t3\t\n")
    with raises("weight is NaN or missing", "line 3", match_file=nan):
        read(nan)
    ws = tmp_path / "nan.txt"
    ws.write_text("1 2 3\n1 3 nan\n")
    with raises("line 2", match_file=ws):
        read(ws, "uir")


def test_unreadable_encoding(tmp_path):
    bad = tmp_path / "latin.csv"
    bad.write_bytes("user,item\n1,a\n2,caf\u00e9\n".encode("latin-1"))
    with raises("not valid utf-8", "line 3", "--encoding latin-1", match_file=bad):
        read(bad)
    assert read(bad, encoding="latin-1").frame["item"].tolist() == ["a", "caf\u00e9"]


def test_malformed_lines_name_the_line(tmp_path):
    uir = tmp_path / "r.txt"
    uir.write_text("1 2 3\n1 3 4\n\n2 2\n")
    with raises("line 4: found 2 fields separated by whitespace, expected 3 like most lines: '2 2'"):
        read(uir, "uir")
    ml = tmp_path / "ratings.dat"
    ml.write_text("1::2::3::978300760\n1::3::978300760\n")
    with raises("line 2", match_file=ml):
        read(ml)
    cf = tmp_path / "X.train"
    cf.write_text("0 0 1\n0 1 2 9\n")
    (tmp_path / "X.test").write_text("0 2 1\n")
    with raises("line 2", match_file=cf):
        read(cf)
    csv = tmp_path / "extra.csv"
    csv.write_text("user,item\n1,2\n1,2,3\n")
    with raises("expected 2 fields", "line 3", match_file=csv):
        read(csv)
    js = tmp_path / "bad.jsonl"
    js.write_text('{"user": 1, "item": 2}\n{"user": 1,\n')
    with raises("invalid JSON", "line 2", match_file=js):
        read(js)
    rb = tmp_path / "bad.inter"
    rb.write_text("user_id\titem_id:token\n1\t2\n")
    with raises("has no :type", "line 1", match_file=rb):
        read(rb)
    kr = tmp_path / "log_x.csv"
    kr.write_text("user_id,item_id,is_click\n1,2,1\n")
    with raises("missing KuaiRand column(s) ['video_id']", match_file=kr):
        read(kr)
    kr.write_text("user_id,video_id,time_ms,is_click\n1,2,1649404800000,1\n1,3,1649404800000,2\n")
    with raises("is_click is '2'", "line 3", match_file=kr):
        read(kr)


# ------------------------------------------------------------------- hostile files: DataError or exact
def test_bom_only_files_are_empty(tmp_path):
    for name in ("bom.csv", "bom.inter", "bom.jsonl"):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf\n")
        with raises("file is empty", match_file=tmp_path / name):
            read(tmp_path / name)
    (tmp_path / "ratings.txt").write_text("1 2 3\n")
    (tmp_path / "trust.txt").write_bytes(b"\xef\xbb\xbf")
    with raises("file is empty", match_file=tmp_path / "trust.txt"):
        read(tmp_path, "filmtrust")


@pytest.mark.parametrize("row, what", [("inf,2,1", "user id inf is not an integer"),
                                       ("1e400,2,1", "user id inf is not an integer"),
                                       ("1,2,1e400", "weight"), ("1,2,3.5e38", "too large for float32")])
def test_non_finite_and_huge_numbers_in_csv(tmp_path, row, what):
    f = tmp_path / "log.csv"
    f.write_text(f"user,item,weight\n1,2,3\n{row}\n")
    with raises(what, "line 3", match_file=f):
        read(f)


JSONL_TEMPLATE = '{{"user": {u}, "item": 2}}\n{{"user": 7, "item": 2}}\n'


@pytest.mark.parametrize("fmt, text", [("uir", "{u} 2 3\n7 2 3\n"), ("lightgcn", "{u} 2 3\n7 2\n"),
                                       ("csv", "user,item\n{u},2\n7,2\n"), ("jsonl", JSONL_TEMPLATE)])
def test_ids_beyond_int64_stay_text_and_distinct(tmp_path, fmt, text):
    big = ["9" * 400, "18446744073709551615", "9223372036854775808", "-9223372036854775809"]
    users = []
    for no, u in enumerate(big):
        f = tmp_path / f"{no}.{fmt}"
        f.write_text(text.format(u=u))
        users.append(read(f, fmt).frame["user"].tolist())
    assert [u[0] for u in users] == big  # each one exactly as written: none wrapped to -1 or INT64_MIN
    assert all(u[-1] == "7" for u in users)


def test_written_forms_of_a_number_stay_distinct_ids(tmp_path):
    f = tmp_path / "r.txt"
    f.write_text("7 1 3\n007 1 3\n+7 1 3\n\u0667 1 3\n1_000 1 3\n1000 1 3\n")  # \u0667 is Arabic-Indic 7
    assert read(f, "uir").frame["user"].tolist() == ["7", "007", "+7", "\u0667", "1_000", "1000"]


def test_timestamps_huge_dates_and_mixed_kinds_in_files(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("user,item,timestamp\n1,2,1600000000\n1,3,2020-01-01\n1,4,1600000001\n")
    with raises("'2020-01-01' is a date but most timestamps in this column are numbers", "line 3",
                match_file=f):
        read(f)
    for date in ("2262-04-12", "1677-09-21", "9999-12-31T23:59:59", "1969-07-20"):
        f.write_text(f"user,item,timestamp\n1,2,2020-01-01\n1,3,{date}\n")
        with raises("out of range 1970..2100", "line 3", match_file=f):
            read(f)
    f.write_text("user,item,timestamp\n1,2,1e400\n")
    with raises("timestamp is NaN, infinite or missing", "line 2", match_file=f):
        read(f)


def test_nul_byte_is_refused(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("user,item\n1,2\n1\x002,3\n")  # pandas would make the whole user column text
    with raises("NUL byte", "line 3", "utf-16", match_file=f):
        read(f)
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("user,item\n1,2\n".encode("utf-16-le"))  # no byte-order mark: decodes as UTF-8
    with raises("NUL byte", "utf-16", match_file=utf16):
        read(utf16)
    utf16.write_bytes("user,item\n1,2\n".encode("utf-16"))  # with one
    with raises("not valid utf-8", "pass --encoding utf-16", match_file=utf16):
        read(utf16)
    assert pairs(read(utf16, encoding="utf-16")) == [(1, 2)]


def test_data_lines_wider_than_the_header_are_refused(tmp_path):
    f = tmp_path / "log.csv"
    for body, line in (("1,2,3\n4,5,6\n", 2), ("1,2\n4,5,6\n", 3), ("1,2,3\n4,5\n", 2)):
        f.write_text("user,item\n" + body)  # pandas alone would take the first field as the row index
        with raises("line", match_file=f) as info:
            read(f)
        assert info.value.line == line


def test_carriage_return_line_endings(tmp_path):
    f = tmp_path / "log.csv"
    for newline in ("\r", "\r\n"):
        f.write_bytes(newline.join(["user,item", "1,2", "3,4", ""]).encode())
        assert pairs(read(f)) == [(1, 2), (3, 4)]
        f.write_bytes(newline.join(["user,item", "1,2,\"x\ry\"", "3,4", ""]).encode())
        with raises("expected 2 fields separated by ',', found 3", "line 2", match_file=f):
            read(f)


@pytest.mark.parametrize("name, text, message", [
    ("log.csv", "user,item,user\n1,2,3\n", "column 'user' appears twice (columns 1 and 3)"),
    ("log.csv", "user, item ,item\n1,2,3\n", "'item' appears twice"),
    # RecBole: else the second user_id wins
    ("dup.inter", "user_id:token\titem_id:token\tuser_id:float\n1\t2\t3\n", "field 'user_id' appears twice"),
    ("dup.inter", "user_id:token\titem_id:token\tuser_id:token\n1\t2\t3\n", "appears twice"),
    # json.loads alone keeps the last
    ("dup.jsonl", '{"user": 1, "item": 2, "user": 3}\n', "key 'user' appears twice"),
])
def test_duplicate_columns_are_refused(tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    where = ("line 1",) if name.endswith(".jsonl") else ()
    with raises(message, *where, match_file=f):
        read(f)


def test_very_wide_header_is_refused_fast(tmp_path):
    f = tmp_path / "wide.csv"
    f.write_text("user,item" + "," * 40_000 + "\n1,2" + "," * 40_000 + "\n")
    t0 = time.perf_counter()
    with raises("the header has 40,002 columns", match_file=f):
        read(f)
    assert time.perf_counter() - t0 < 1.0  # pandas alone takes seconds over such a header
    f.write_text("user,item\n1,2\n3,4" + ",7" * 40_000 + "\n" + "5,6\n" * 1000)  # or such a data line
    t0 = time.perf_counter()
    with raises("expected 2 fields separated by ',', found 40002", "line 3", match_file=f):
        read(f)
    assert time.perf_counter() - t0 < 1.0


def test_hostile_json_lines(tmp_path):
    f = tmp_path / "log.jsonl"
    cases = [('{"user": ' + "9" * 5000 + ', "item": 1}', "Exceeds the limit (4300 digits)"),
             ('{"user": 1, "item": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
             ('{"user": "a\\ud800", "item": 1}', "lone UTF-16 surrogate"),
             ('{"user": [1, 2], "item": 1}', "user holds a list"),
             ('{"user": 1, "item": {"id": 1}}', "item holds a dict"),
             ('{"user": 1, "item": 2, "weight": 1e400}', "weight"),
             ('{"user": "a\\u0000", "item": 2}', "NUL")]
    for line, what in cases:
        f.write_text('{"user": 1, "item": 1, "weight": 1}\n' + line + "\n")
        with raises(what, "line 2", match_file=f):
            read(f)


def test_hostile_parquet_columns(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    f = tmp_path / "log.parquet"
    raw = [b"a", b"b\xff"]  # a string column whose bytes are not UTF-8: arrow writes it unchecked
    offsets = pa.py_buffer(np.cumsum([0] + [len(b) for b in raw]).astype(np.int32).tobytes())
    bad_text = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"".join(raw))])
    pq.write_table(pa.table({"user": bad_text, "item": [1, 2]}), f)
    with raises("not UTF-8", match_file=f):
        read(f)
    pq.write_table(pa.table({"user": pa.array([1, 2**64 - 1], pa.uint64()), "item": [1, 2]}), f)
    assert read(f).frame["user"].tolist() == ["1", "18446744073709551615"]
    year_3000 = pa.array([0, 32_503_680_000], pa.timestamp("s"))
    pq.write_table(pa.table({"user": [1, 2], "item": [1, 2], "timestamp": year_3000}), f)
    with raises("timestamp 3000-01-01T00:00:00 is out of range", "line 2", match_file=f):
        read(f)
    pq.write_table(pa.table({"user": [1, 2], "item": [1, 2], "action": year_3000}), f)
    with raises("actions are dates", match_file=f):
        read(f)
    pq.write_table(pa.table({"user": pa.array([["a"], ["b"]]), "item": [1, 2]}), f)
    with raises("user holds a", "line 1", match_file=f):
        read(f)
    pq.write_table(pa.table({f"c{i}": [1] for i in range(1001)}), f)
    with raises("the header has 1,001 columns", match_file=f):
        read(f)


def test_kuairand_huge_times_and_dates(tmp_path):
    kr = tmp_path / "log_x.csv"
    kr.write_text("user_id,video_id,time_ms,is_click\n1,2,1649404800000,1\n1,3," + "9" * 400 + ",0\n")
    with raises("timestamp", "line 3", match_file=kr):
        read(kr)
    kr.write_text("user_id,video_id,date,hourmin,is_click\n1,2,20220408,1630,1\n1,3,99991231,1630,0\n")
    with raises("out of range", "line 3", match_file=kr):
        read(kr)
    kr.write_text("user_id,video_id,time_ms,is_click\n1,2,1649404800000,1\n1,3,1649404800000," + "9" * 400 + "\n")
    with raises("is_click is", "line 3", match_file=kr):
        read(kr)


def test_partitioned_parquet_folder_reads_like_the_single_file(tmp_path):
    """A hive-partitioned folder (day=K/part-0.parquet) is detected as parquet and gives the rows
    of the same log written as one file; the partition key is an extra column, ignored."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"user": rng.integers(0, 40, n), "item": rng.integers(0, 30, n),
                          "action": rng.choice(["view", "like"], n), "timestamp": 1_700_000_000 + np.arange(n) * 400})
    frame.to_parquet(tmp_path / "one.parquet", index=False)
    day = frame["timestamp"] // 86_400
    for d in day.unique():
        (tmp_path / "log" / f"day={d}").mkdir(parents=True)
        frame[day == d].to_parquet(tmp_path / "log" / f"day={d}" / "part-0.parquet", index=False)
    assert detect_format(tmp_path / "log") == "parquet"
    key = ["timestamp", "user", "item", "action"]
    one = read(tmp_path / "one.parquet").frame.sort_values(key).reset_index(drop=True)
    folder = read(tmp_path / "log").frame.sort_values(key).reset_index(drop=True)
    assert list(folder.columns) == list(one.columns)
    pd.testing.assert_frame_equal(folder, one)
