"""Property: any mutated log, in any reader format, loads as a valid table or raises DataError.

The mutations are benchmarks/fuzz.py's (byte flips, truncation, BOM, NUL, bad UTF-8, non-finite and huge
numbers, extreme dates, duplicated columns, wide headers, deep JSON, odd parquet types), driven here by
hypothesis (its ``randoms()`` plus drawn cell values) with a fixed budget, so the suite stays quick and
deterministic; the benchmark runs the same mutations 10,000 times per format.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_spec = importlib.util.spec_from_file_location("feedgan_fuzz_bench",
                                               Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py")
fuzz = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(fuzz)

VALUES = st.one_of(st.text(max_size=12), st.integers().map(str), st.floats().map(repr),
                   st.sampled_from(fuzz.NASTY), st.datetimes().map(lambda d: d.isoformat()))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "case"


@pytest.mark.parametrize("fmt", fuzz.FORMATS)
def test_mutated_input_loads_valid_or_raises_data_error(fmt, folder):
    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(rnd=st.randoms(use_true_random=False), extra=st.lists(VALUES, max_size=3).map(tuple))
    def check(rnd, extra):
        case, files = fuzz.make_case(fmt, rnd, extra)
        out = fuzz.run_case(folder, case, files)
        assert out.kind != "crash", f"{case.notes}: {out.detail} at {out.where}"

    check()


def test_check_table_catches_broken_tables():
    """The property is only as strong as its check: a table that breaks the schema must fail it."""
    from feedgan.data.schema import validate

    good = validate(fuzz.pd.DataFrame({"user": [1, 2], "item": ["a", "b"], "timestamp": [0, 10]}))
    assert fuzz.check_table(good) == []
    for col, value in (("weight", float("inf")), ("timestamp", -1), ("item", "a\x00")):
        broken = good.with_frame(good.frame.assign(**{col: [good.frame[col].iloc[0], value]}))
        assert fuzz.check_table(broken), col
