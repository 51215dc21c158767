"""Property: random malformed rows never crash an ingest run nor change stored rows."""

import shutil
import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parkcast import schema
from parkcast.db import make_engine, migrate
from parkcast.tasks.ingest import _split_per_line, _split_with_c_parser, ingest_folder
from tests.conftest import DATA_DIR

HEADER = "date,datetime,SACTMIN,SPOSTMIN\n"
GOOD = "03/01/2019,2019-03-01 09:00:00,,45\n03/01/2019,2019-03-01 09:05:00,12,-999\n"

field = st.one_of(
    st.sampled_from(["", "-999", "45", "-1", "99999", "abc", "03/01/2019", "2019-03-01 09:00:00",
                     "2019-11-03 01:30:00", "02/30/2019", "nan", "1e9", '"', "9:00", "4.5", "\r", "\x00"]),
    st.text(alphabet=st.characters(blacklist_characters=",\n\r", blacklist_categories=("Cs",)), max_size=12),
)
row = st.lists(field, min_size=0, max_size=6).map(lambda fields: ",".join(fields))


def _snapshot(engine):
    with engine.connect() as connection:
        return connection.execute(sa.select(schema.observations).order_by(schema.observations.c.id)).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=20), appended=st.booleans())
def test_malformed_rows_never_crash_or_change(rows, appended):
    folder = Path(tempfile.mkdtemp())
    try:
        shutil.copy(DATA_DIR / "attractions.csv", folder / "attractions.csv")
        ride = folder / "soarin.csv"
        ride.write_text(HEADER + GOOD, encoding="utf-8")
        engine = make_engine(f"sqlite:///{folder / 'db.sqlite'}")
        migrate(engine)
        first = ingest_folder.fn(engine, folder, 500)
        before = _snapshot(engine)

        text = "\n".join(rows) + "\n"
        if appended:  # a grown file: read incrementally
            with ride.open("a", encoding="utf-8") as handle:
                handle.write(text)
        else:  # a new overlapping export with the stored rows and junk
            (folder / "soarin.junk.csv").write_text(HEADER + GOOD + text, encoding="utf-8")
        summary = ingest_folder.fn(engine, folder, 500)
        after = _snapshot(engine)
        engine.dispose()
    finally:
        shutil.rmtree(folder)

    assert first.rows_stored == 2
    assert summary.failed_files == {}
    assert after[: len(before)] == before
    assert summary.rows_read == len(rows) + (0 if appended else 2)
    assert summary.rows_stored + summary.rows_rejected <= summary.rows_read
    assert len(after) == len(before) + summary.rows_stored


line_field = st.text(alphabet=st.characters(blacklist_characters=",\n\x00", blacklist_categories=("Cs",)), max_size=8)
four_field_line = st.lists(line_field, min_size=4, max_size=4).map(lambda fields: ",".join(fields))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(four_field_line, min_size=1, max_size=12))
def test_c_parser_splits_like_str_split(lines):
    text = "\n".join(lines) + "\n"
    fast, fast_wrong_width = _split_with_c_parser(text, 2)
    slow, slow_wrong_width = _split_per_line(lines, 2)
    assert fast.values.tolist() == slow.values.tolist()
    assert list(fast.index) == list(slow.index)
    assert not fast_wrong_width.any()
    assert not slow_wrong_width.any()
