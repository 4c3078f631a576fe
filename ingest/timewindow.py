"""The plausible window of observation times: a reading dated outside it is rejected, per row.

A reading dated 1900-01-15 in a load of 2026 readings is a typing or clock error, not a
measurement; storing it would also make ``readings`` grow a monthly partition for each month
in between (1,497 of them in one probe). And a year the parser cannot hold (0001-01-01 with an
offset east of UTC lies in year 0) came back from pandas wrapped round to 1972: stored as a
wrong time without a word. So every reading's time is checked here, for files, MQTT and
``POST /readings`` alike (``ingest.validate.check_field`` calls this for every datetime
field), in two steps:

- before parsing, ISO text whose year lies outside the window is taken out of the column
  (the row is rejected with the reason), so pandas never sees a year it would wrap or fail
  on (9999-12-31T23:00:00-01:00 lies in year 10000 and came back as 1972 too);
- after parsing, any time before the window (epoch numbers, strftime patterns, ISO with an
  offset that crosses the edge) is rejected the same way. Times after now are rejected by
  validation's "is in the future" rule, with that reason, as before.

The window runs from ``TWIN_READINGS_EARLIEST`` (default 1970-01-01, the start of sensor data
anyone will load) to now plus ``TWIN_READINGS_FUTURE_SKEW_HOURS`` (default 24); a year after
the window's is "in the future" without being parsed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
from pydantic_settings import BaseSettings, SettingsConfigDict

# The year of an ISO 8601 date-time as written: "1900-01-15", "0001-01-01T00:00:00+01:00",
# "+10000-01-01" (expanded years), with or without leading blanks.
_ISO_YEAR = re.compile(r"^\s*([+-]?\d{1,9})-\d")
FUTURE = "is in the future"  # the reason ingest.validate gives for a time after now


class TimeWindowSettings(BaseSettings):
    """The plausible window of observation times, from ``TWIN_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    readings_earliest: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    readings_future_skew_hours: float = 24.0


def window(now: datetime) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The earliest and latest plausible observation time when it is ``now`` (both UTC)."""
    settings = TimeWindowSettings()
    earliest = pd.Timestamp(settings.readings_earliest)
    earliest = earliest.tz_localize("UTC") if earliest.tzinfo is None else earliest
    latest = pd.Timestamp(now) + timedelta(hours=settings.readings_future_skew_hours)
    latest = latest.tz_localize("UTC") if latest.tzinfo is None else latest
    return earliest.tz_convert("UTC"), latest.tz_convert("UTC")


def _reason(earliest: pd.Timestamp, latest: pd.Timestamp) -> str:
    return (f"is outside the plausible window {earliest:%Y-%m-%d} to "
            f"{latest:%Y-%m-%d %H:%M}Z")


def screen_raw(raw: pd.Series, fmt: str | None, field_name: str, problems,
               now: datetime) -> pd.Series:
    """``raw`` with ISO times of an implausible year blanked out and rejected with the reason.

    Parameters
    ----------
    raw : pd.Series
        The column as read (text, or numbers for epoch formats).
    fmt : str or None
        The mapping's time format; only ISO text (``None`` or ``"iso"``) is screened here.
    field_name : str
        The field, for the reject.
    problems : ingest.validate.Problems
        Where rejects are recorded.
    now : datetime
        The load's time.
    """
    if fmt not in (None, "iso") or not len(raw):
        return raw
    earliest, latest = window(now)
    years = raw.astype(str).str.extract(_ISO_YEAR, expand=False)
    years = pd.to_numeric(years, errors="coerce")
    early = years.notna() & (years < earliest.year)
    late = years.notna() & (years > latest.year)
    problems.add(early, field_name, raw, _reason(earliest, latest))
    problems.add(late, field_name, raw, FUTURE)
    return raw.where(~(early | late).fillna(False).astype(bool), None)


def check_parsed(values: pd.Series, raw: pd.Series, field_name: str, problems,
                 now: datetime) -> pd.Series:
    """Parsed UTC times with those before the window rejected (and set to NaT)."""
    if not len(values):
        return values
    earliest, latest = window(now)
    outside = values.notna() & (values < earliest)
    problems.add(outside, field_name, raw, _reason(earliest, latest))
    return values.where(~outside.fillna(False).astype(bool))
