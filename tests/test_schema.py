"""validate(): normalisation of ids, actions, weights, timestamps; one-line DataErrors."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from feedgan.data.schema import ACTIONS, TS_MAX, DataError, Interactions, validate

SRC = "logs/events.csv"
# row i of the frame sits on file line LINES[i] (a header, comments and blank lines in between)
LINES = np.array([2, 3, 7, 11, 12])


def _frame(**cols) -> pd.DataFrame:
    base = {"user": [1, 2, 3, 4, 5], "item": [10, 20, 30, 40, 50]}
    base.update(cols)
    return pd.DataFrame(base)


def _utc(s: str) -> int:
    return int(pd.Timestamp(s, tz="UTC").timestamp())


# -- ids ------------------------------------------------------------------------------------------
def test_numeric_string_ids_become_int64():
    inter = validate(pd.DataFrame({"user": ["1", " 2", "30"], "item": ["7", "8", "9 "]}))
    assert inter.frame["user"].dtype == np.int64
    assert inter.frame["item"].dtype == np.int64
    assert inter.frame["user"].tolist() == [1, 2, 30]
    assert inter.frame["item"].tolist() == [7, 8, 9]


def test_integral_float_ids_become_int64():
    inter = validate(pd.DataFrame({"user": [1.0, 2.0], "item": [3.0, 4.0]}))
    assert inter.frame["user"].dtype == np.int64
    assert inter.frame["user"].tolist() == [1, 2]


def test_mixed_ids_stay_strings():
    inter = validate(pd.DataFrame({"user": ["1", "2", "alice"], "item": ["1", "2.5", "3"]}))
    users, items = inter.frame["user"], inter.frame["item"]
    assert users.dtype == object and items.dtype == object
    assert users.tolist() == ["1", "2", "alice"]
    assert all(isinstance(u, str) for u in users)
    # "2.5" is not an integer, so the whole item column stays text
    assert items.tolist() == ["1", "2.5", "3"]


def test_non_integer_float_id_is_an_error():
    with pytest.raises(DataError) as e:
        validate(_frame(user=[1, 2, 3.5, 4, 5]), source=SRC, line_of=LINES)
    assert e.value.line == 7 and "line 7" in str(e.value) and "fix" in str(e.value)


# -- actions --------------------------------------------------------------------------------------
def test_actions_lower_cased_categorical_known_first():
    inter = validate(_frame(action=["Zap", " SHARE", "like", "View", "abc"]))
    act = inter.frame["action"]
    assert isinstance(act.dtype, pd.CategoricalDtype)
    assert act.astype(str).tolist() == ["zap", "share", "like", "view", "abc"]
    # known social actions first, in ACTIONS order, then the others sorted
    assert inter.actions == ["view", "like", "share", "abc", "zap"]
    assert inter.actions[:3] == [a for a in ACTIONS if a in {"view", "like", "share"}]


def test_missing_action_column_defaults_to_view():
    inter = validate(_frame())
    assert inter.actions == ["view"]
    assert (inter.frame["action"] == "view").all()
    assert validate(_frame(), default_action="like").actions == ["like"]


def test_empty_action_is_an_error():
    with pytest.raises(DataError) as e:
        validate(_frame(action=["view", "like", None, "view", "like"]), source=SRC, line_of=LINES)
    assert e.value.line == 7 and SRC in str(e.value) and "fix" in str(e.value)


# -- weights --------------------------------------------------------------------------------------
def test_weight_defaults_to_one_float32():
    inter = validate(_frame())
    assert inter.frame["weight"].dtype == np.float32
    assert (inter.frame["weight"] == 1.0).all()


def test_weight_numeric_strings_parsed_as_float32():
    inter = validate(_frame(weight=["1", "2.5", "3", "4", "0.5"]))
    assert inter.frame["weight"].dtype == np.float32
    np.testing.assert_array_equal(inter.frame["weight"].to_numpy(), np.float32([1, 2.5, 3, 4, 0.5]))


# -- timestamps -----------------------------------------------------------------------------------
def test_timestamps_from_seconds():
    ts = [0, 1_600_000_000, 1_600_000_001, TS_MAX, 1_234_567_890]
    inter = validate(_frame(timestamp=ts))
    assert inter.has_timestamps
    assert inter.frame["timestamp"].dtype == np.int64
    assert inter.frame["timestamp"].tolist() == ts


def test_timestamps_from_numeric_strings():
    inter = validate(_frame(timestamp=["1600000000", "1600000001", "1", "2", "3"]))
    assert inter.frame["timestamp"].tolist() == [1_600_000_000, 1_600_000_001, 1, 2, 3]


def test_no_timestamp_column_means_no_timestamps():
    assert not validate(_frame()).has_timestamps


_ISO = ["2020-01-01", "2020-01-02", "2021-03-04", "1999-12-31", "2020-01-01"]


def test_timestamps_from_iso_dates():
    inter = validate(_frame(timestamp=_ISO))
    # 2020-01-01T00:00:00Z is 18262 days * 86400 s = 1_577_836_800 s after the epoch
    assert _utc("2020-01-01") == 18262 * 86400 == 1_577_836_800
    assert inter.frame["timestamp"].tolist() == [_utc(s) for s in _ISO]


def test_timestamps_from_datetime64_column():
    col = pd.Series(pd.to_datetime(_ISO))  # datetime64[us] under pandas 3
    inter = validate(_frame(timestamp=col))
    assert inter.frame["timestamp"].tolist() == [_utc(s) for s in _ISO]


def test_timestamps_from_datetime64_ns_column():
    col = pd.Series(pd.to_datetime(_ISO)).astype("datetime64[ns]")
    inter = validate(_frame(timestamp=col))
    assert inter.frame["timestamp"].dtype == np.int64
    assert inter.frame["timestamp"].tolist() == [_utc(s) for s in _ISO]


def test_iso_dates_preserve_order_and_differences():
    # independent of the unit bug above: one day apart stays ordered and proportional
    ts = validate(_frame(timestamp=_ISO)).frame["timestamp"].to_numpy()
    assert ts[1] > ts[0] and ts[3] < ts[0] and ts[4] == ts[0]


def test_timestamps_from_mixed_precision_iso():
    inter = validate(_frame(timestamp=["2020-01-01", "2020-01-02T10:00:00", "2020-01-03", "2020-01-04",
                                       "2020-01-05T00:00:00Z"]))
    assert inter.frame["timestamp"].iloc[1] == _utc("2020-01-02T10:00:00")


# -- errors: message names the source, the 1-based line (via line_of) and a fix ---------------------
def _error(frame, **kw) -> DataError:
    with pytest.raises(DataError) as e:
        validate(frame, source=SRC, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(SRC)
    assert "fix" in msg
    return e.value


@pytest.mark.parametrize("cols", [{"uid": [1, 2], "item": [1, 2]}, {"user": [1, 2], "iid": [1, 2]},
                                  {"User": [1, 2], "Item": [1, 2]}])
def test_missing_or_misnamed_column(cols):
    err = _error(pd.DataFrame(cols))
    assert "missing column" in str(err)
    missing = {"user", "item"} - set(cols)
    assert all(repr(c) in str(err) for c in missing)
    # the message lists what was found, so a misnamed column is visible
    assert all(repr(c) in str(err) for c in cols)


def test_non_numeric_weight():
    err = _error(_frame(weight=["1", "2", "3", "lots", "5"]), line_of=LINES)
    assert err.line == 11 and ", line 11:" in str(err)
    assert "'lots'" in str(err)


def test_nan_weight():
    err = _error(_frame(weight=[1.0, np.nan, 3.0, 4.0, 5.0]), line_of=LINES)
    assert err.line == 3 and ", line 3:" in str(err)
    assert "NaN" in str(err)


def test_infinite_weight():
    err = _error(_frame(weight=[1.0, 2.0, 3.0, 4.0, np.inf]), line_of=LINES)
    assert err.line == 12


def test_millisecond_timestamps_hint_divide_by_1000():
    err = _error(_frame(timestamp=[1_600_000_000, 1_600_000_000, 1_600_000_000_000, 1, 2]), line_of=LINES)
    assert err.line == 7 and ", line 7:" in str(err)
    assert "out of range" in str(err)
    assert re.search(r"divide by 1000", str(err))


def test_negative_timestamp_out_of_range():
    err = _error(_frame(timestamp=[1, 2, 3, -1, 5]), line_of=LINES)
    assert err.line == 11 and "out of range" in str(err)
    assert "1000" not in err.fix


def test_unparseable_timestamp():
    err = _error(_frame(timestamp=["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "soon"]),
                 line_of=LINES)
    assert err.line == 12 and "'soon'" in str(err)


def test_nan_timestamp():
    err = _error(_frame(timestamp=[1.0, np.nan, 3.0, 4.0, 5.0]), line_of=LINES)
    assert err.line == 3


def test_without_line_of_rows_are_numbered_from_one():
    err = _error(_frame(weight=[1.0, 2.0, 3.0, np.nan, 5.0]))
    assert err.line == 4


def test_empty_frame():
    err = _error(pd.DataFrame({"user": [], "item": []}))
    assert "no interactions" in str(err)
    assert err.line is None


@pytest.mark.parametrize("bad", ["validation", "Train", "dev"])
def test_bad_part_value(bad):
    err = _error(_frame(part=["train", "test", "valid", bad, "train"]), line_of=LINES)
    assert err.line == 11 and repr(bad) in str(err)


def test_good_parts_are_categorical():
    inter = validate(_frame(part=["train", "test", "valid", "train", "test"]))
    assert inter.has_parts
    assert list(inter.frame["part"].cat.categories) == ["train", "valid", "test"]
    assert inter.frame["part"].astype(str).tolist() == ["train", "test", "valid", "train", "test"]


@pytest.mark.parametrize("users", [[1, 2, 3, np.nan, 5], ["a", "b", "c", None, "e"]])
def test_empty_user_id(users):
    err = _error(_frame(user=users), line_of=LINES)
    assert err.line == 11 and "empty user id" in str(err)


def test_empty_item_id():
    err = _error(_frame(item=[1, None, 3, 4, 5]), line_of=LINES)
    assert err.line == 3 and "item" in str(err)


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_string_user_id(blank):
    _error(_frame(user=["a", "b", blank, "d", "e"]), line_of=LINES)


def test_error_without_file_has_no_location_prefix():
    err = DataError("bad thing", fix="do better")
    assert str(err) == "bad thing (fix: do better)"
    assert str(DataError("x", file="f.csv", line=3)) == "f.csv, line 3: x"


# -- social graph and container ---------------------------------------------------------------------
def test_social_graph_normalised():
    inter = validate(_frame(), social=pd.DataFrame({"src": ["1", "2"], "dst": ["3", "9"]}))
    assert list(inter.social.columns) == ["src", "dst", "weight"]
    assert inter.social["src"].dtype == np.int64
    assert inter.social["weight"].dtype == np.float32
    with pytest.raises(DataError, match="src"):
        validate(_frame(), social=pd.DataFrame({"from": [1], "dst": [2]}))


def test_interactions_container():
    inter = validate(_frame(), source=SRC)
    assert isinstance(inter, Interactions)
    assert len(inter) == 5 and inter.source == SRC
    assert list(inter.frame.columns) == ["user", "item", "action", "weight"]
    nxt = inter.with_frame(inter.frame.iloc[[3, 1]], dropped=3)
    assert nxt.frame.index.tolist() == [0, 1]
    assert nxt.notes == {"dropped": 3} and inter.notes == {}


# -- hostile values: refused with a DataError, or kept exactly; never two raw ids stored as one ------------
def test_uint64_ids_above_int64_stay_exact_text():
    users = np.array([1, 2**64 - 1, 2**63], dtype=np.uint64)  # astype(int64) would make 2**64-1 into -1
    inter = validate(pd.DataFrame({"user": users, "item": [1, 2, 3]}))
    assert inter.frame["user"].tolist() == ["1", "18446744073709551615", "9223372036854775808"]
    assert validate(pd.DataFrame({"user": np.array([1, 2], dtype=np.uint64), "item": [1, 2]})
                    ).frame["user"].dtype == np.int64  # uint64 that int64 holds stays numeric


def test_text_ids_beyond_int64_are_kept_as_text():
    big = ["9223372036854775808", "9223372036854775809", "-9223372036854775809", "9" * 400, "7"]
    inter = validate(_frame(user=big))
    assert inter.frame["user"].tolist() == big and inter.frame["user"].nunique() == 5
    assert validate(_frame(user=["-9223372036854775808", "1", "2", "3", "4"])).frame["user"].dtype == np.int64


def test_signed_zero_and_python_int_ids_do_not_alias():
    assert validate(_frame(user=["-0", "0", "1", "2", "3"])).frame["user"].tolist() == ["-0", "0", "1", "2", "3"]
    huge = pd.Series([1, 2**70, 3, 4, 5], dtype=object)  # what a JSON reader hands over
    assert validate(_frame(user=huge)).frame["user"].tolist() == ["1", str(2**70), "3", "4", "5"]


@pytest.mark.parametrize("value, what", [(np.inf, "is not an integer"), (-np.inf, "is not an integer"),
                                         (1e20, "too large to be exact"), (2.0**53 + 2, "too large to be exact")])
def test_float_ids_must_be_exact_integers(value, what):
    err = _error(_frame(user=[1.0, 2.0, value, 4.0, 5.0]), line_of=LINES)
    assert err.line == 7 and what in str(err)


@pytest.mark.parametrize("cell, what", [([1, 2], "holds a list"), ({"a": 1}, "holds a dict"),
                                        (b"\x01", "holds a bytes"), ("a\ud800", "lone UTF-16 surrogate")])
def test_ids_must_be_single_valid_values(cell, what):
    err = _error(_frame(user=pd.Series(["a", "b", "c", cell, "e"], dtype=object)), line_of=LINES)
    assert err.line == 11 and what in str(err)


def test_nul_in_an_id_is_refused():
    err = _error(_frame(item=["1", "2", "3", "4", "5\x00"]), line_of=LINES)
    assert err.line == 12 and "NUL" in str(err)


def test_weight_beyond_float32_is_refused():
    err = _error(_frame(weight=[1.0, 2.0, 3.5e38, 4.0, 5.0]), line_of=LINES)
    assert err.line == 7 and "float32" in str(err)
    err = _error(_frame(weight=pd.Series([1, 2, 3, 10**400, 5], dtype=object)), line_of=LINES)
    assert err.line == 11


@pytest.mark.parametrize("odd, line", [(0, 2), (3, 11)])
def test_mixed_timestamp_kinds_name_the_odd_one(odd, line):
    ts = ["1600000000"] * 5 if odd == 0 else ["2020-01-01"] * 5
    ts[odd] = "2020-01-02" if odd == 0 else "1600000000"
    err = _error(_frame(timestamp=ts), line_of=LINES)
    assert err.line == line and "one kind" in err.fix


@pytest.mark.parametrize("date", ["1969-12-31", "1900-01-01", "2100-01-02", "9999-12-31", "0001-01-01"])
def test_dates_outside_1970_2100_are_refused_like_numbers(date):
    err = _error(_frame(timestamp=["2020-01-01", "2020-01-02", "2020-01-03", date, "2020-01-05"]),
                 line_of=LINES)
    assert err.line == 11 and "out of range 1970..2100" in str(err) and date in str(err)


@pytest.mark.parametrize("unit, value", [("s", -10**12), ("s", 10**12), ("us", 2**62), ("ns", -2**62)])
def test_datetime64_beyond_nanosecond_range_is_refused(unit, value):
    col = pd.Series(np.array([0, 0, value, 0, 0], dtype=f"datetime64[{unit}]")) + pd.Timedelta(days=20000)
    err = _error(_frame(timestamp=col), line_of=LINES)
    assert err.line == 7 and "out of range" in str(err)


def test_relative_date_words_are_not_dates():
    err = _error(_frame(timestamp=["2020-01-01", "now", "2020-01-03", "2020-01-04", "2020-01-05"]),
                 line_of=LINES)
    assert err.line == 3 and "'now'" in str(err)


def test_duplicate_columns_are_refused():
    frame = pd.DataFrame([[1, 2, 3]], columns=["user", "item", "user"])
    assert "'user' appears more than once" in str(_error(frame))


def test_social_ids_follow_users_kept_as_text():
    # a user id too large for int64 makes the log's users text; the friend file's int ids must meet them
    users = ["1", "99999999999999999999", "3", "4", "5"]
    inter = validate(_frame(user=users), social=pd.DataFrame({"src": [1, 3], "dst": [3, 1]}))
    assert inter.social["src"].tolist() == ["1", "3"]
    assert set(inter.social["src"]) <= set(inter.frame["user"])


def test_dates_in_two_formats_and_extreme_years():
    # ISO-8601 and free-form dates are parsed apart (pandas gives them different units): no overflow
    ts = ["0001-01-03", "2020-01-01", "2020-01-02", "2020-01-03", "5 Jan 2020"]
    err = _error(_frame(timestamp=ts), line_of=LINES)
    assert err.line == 2 and "out of range" in str(err)
    ok = validate(_frame(timestamp=ts[1:] + ["Jan 6 2020 10:00"])).frame["timestamp"].tolist()
    assert ok == [_utc("2020-01-01"), _utc("2020-01-02"), _utc("2020-01-03"), _utc("2020-01-05"),
                  _utc("2020-01-06T10:00")]


def test_categorical_actions_are_normalised_through_their_categories():
    """Parquet gives actions as a categorical: spellings merge as for text, and the check allocates
    about a row's codes and ids, not a new string per row."""
    import tracemalloc

    n = 200_000
    frame = pd.DataFrame({"user": np.arange(n) % 1000, "item": np.arange(n) % 77,
                          "action": pd.Categorical.from_codes(np.arange(n) % 3, [" View", "like", "LIKE "])})
    tracemalloc.start()
    try:
        inter = validate(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert inter.frame["action"].value_counts().to_dict() == {"like": 2 * n // 3, "view": n - 2 * n // 3}
    assert list(inter.frame["action"].cat.categories) == ["view", "like"]
    text = validate(frame.assign(action=frame["action"].astype(str)))
    assert (text.frame["action"].astype(str) == inter.frame["action"].astype(str)).all()
    assert peak / n < 50  # user + item int64, weight float32, action codes: ~29 bytes a row
