"""Fleet inference demand over a year: token mix, burstiness and the daily and weekly shape.

Two public traces feed the model (``data/traces/*/README.md`` give source, licence and columns):

- **Azure LLM inference trace 2023** (one hour, code + conversation services, 28,185
  requests): the token mix — prompt (``ContextTokens``, prefill) and generated
  (``GeneratedTokens``, decode) tokens per request, hence the prefill share of tokens — and
  the burstiness: the coefficient of variation of the token arrival rate in 1-minute windows
  about the hour's mean (tokens of a request counted at its arrival minute; partial first and
  last minutes dropped).
- **ServeGen m-large** (14 days of 10-minute aggregate request rates, t = 0 at local
  midnight): the daily and weekly shape.

How the year is built from 14 days
----------------------------------
1. Each ServeGen day is split into its *level* (its mean rate over the 14-day mean) and its
   *shape* (its 144 ten-minute rates over its own mean).
2. The weekday of ServeGen day 0 is not published. We take day 0 to be a **Tuesday**: then
   days 4–5 and 11–12 are the weekend, and that is the pair of consecutive weekday positions
   with the lowest combined demand over both weeks (see ``data/traces/servegen/README.md``).
3. Each weekday's level is the mean of its two ServeGen days (Monday … Sunday: 1.17, 1.33,
   1.12, 1.01, 0.79, 0.85, 0.73). The day-to-day variability is the 14 ratios of a day's
   level to its weekday's level, in logs widened by sqrt(14 / 7) (a residual about a two-day
   mean has half the variance of the day itself; σ ≈ 0.22) and rescaled to mean 1.
4. Every calendar day covered by the index (naive = the grid's local time; a tz-aware index is
   read in its own wall-clock time) takes the shape of the ServeGen day with the same weekday
   from week 1 or week 2 (drawn by the seed), times its weekday level, times one of the 14
   day-level factors drawn at random (bootstrap: no day beyond the observed spread).
5. The ten-minute rates, placed at the middle of their windows, are joined piecewise-linearly
   across days, and each step of the index gets the *mean* of that curve over its interval
   ``[t, next t)`` (so steps longer than 10 minutes average, shorter ones interpolate).
6. Each step is multiplied by independent lognormal noise of mean 1 and coefficient of
   variation ``burst_cv_1min × sqrt(1 min / step)``.
7. The series is divided by its largest value (peak 1.0 over the index).

Burstiness at the step: the Azure trace's CV is 0.50 at 1 minute but falls more slowly than
``1/sqrt(window)`` (0.41, 0.36, 0.31 at 2, 3, 5 minutes; 0.25 at 10 minutes), because
minutes are correlated (lag-1 autocorrelation 0.37) and the rate drifts within the hour.
Independent step noise can only carry the uncorrelated part, which scales as the square
root; the slow, correlated variation is what the ServeGen 10-minute curve already holds.
The Azure services are small (8 requests/s); a fleet aggregates many such streams and is
smoother, so the noise is on the conservative (bursty) side for a capacity check.

No seasonal trend or growth is modelled: the 14 days are all the shape data there is.
Same index and seed give the same series (``numpy.random.default_rng(seed)``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from siting.errors import DataError, UsageError

MAX_TOKENS_PER_S = 1e12  # far above any fleet (25 sites × 20 MW serve about 1e9 tokens/s)
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"
AZURE_FILES = (
    DATA_DIR / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv",
    DATA_DIR / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv",
)
SERVEGEN_FILE = DATA_DIR / "servegen" / "aggregate_rate_language_m-large.csv"
SERVEGEN_DAY0_WEEKDAY = 1  # Tuesday (Monday = 0); see the module docstring
SERVEGEN_WINDOW_S = 600

DEMAND_COLUMNS = ["prefill_tokens_per_s", "decode_tokens_per_s"]

# A time that ends in a UTC offset or "Z" (after an hh:mm time, so dates like 2016-01-01 do
# not count).
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


@dataclass(frozen=True)
class TokenMix:
    """Tokens per request and burstiness of the inference workload."""

    prefill_tokens_per_request: float  # prompt tokens per request (mean)
    decode_tokens_per_request: float  # generated tokens per request (mean)
    burst_cv_1min: float  # CV of tokens/s in 1-minute windows about the hour's mean

    @property
    def prefill_share(self) -> float:
        """Share of all tokens that are prefill (prompt) tokens, 0..1."""
        total = self.prefill_tokens_per_request + self.decode_tokens_per_request
        return self.prefill_tokens_per_request / total

    def step_cv(self, step_s: float | np.ndarray) -> np.ndarray:
        """CV of the independent multiplicative noise at a step of ``step_s`` seconds."""
        return self.burst_cv_1min * np.sqrt(60.0 / np.asarray(step_s, dtype=float))


def _read_azure(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UsageError(f"{path}: request trace not found; give an existing CSV file")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the request trace ({exc})") from None
    needed = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
    if not needed <= set(frame.columns):
        raise DataError(f"{path}: needs columns TIMESTAMP, ContextTokens, GeneratedTokens")
    frame["TIMESTAMP"] = pd.to_datetime(frame["TIMESTAMP"], errors="coerce")
    if frame["TIMESTAMP"].isna().any() or frame[["ContextTokens", "GeneratedTokens"]].isna().any().any():
        raise DataError(f"{path}: has empty or unparsable values; give a complete trace")
    return frame


@functools.lru_cache(maxsize=8)
def _token_mix(paths: tuple[Path, ...]) -> TokenMix:
    requests = pd.concat([_read_azure(p) for p in paths], ignore_index=True)
    tokens = requests["ContextTokens"] + requests["GeneratedTokens"]
    per_minute = tokens.groupby(requests["TIMESTAMP"].dt.floor("min")).sum()
    minutes = pd.date_range(per_minute.index.min(), per_minute.index.max(), freq="min")
    # The first and last minutes are only partly inside the trace.
    full = per_minute.reindex(minutes, fill_value=0).to_numpy(float)[1:-1]
    if len(full) < 2:
        raise UsageError(f"{paths[0]}: the trace spans under three minutes; burstiness needs more")
    return TokenMix(
        prefill_tokens_per_request=float(requests["ContextTokens"].mean()),
        decode_tokens_per_request=float(requests["GeneratedTokens"].mean()),
        burst_cv_1min=float(full.std(ddof=1) / full.mean()),
    )


def token_mix(paths: Sequence[Path] | None = None) -> TokenMix:
    """Token mix and burstiness from Azure-format request traces (default: code + conv)."""
    chosen = AZURE_FILES if paths is None else tuple(Path(p).resolve() for p in paths)
    if not chosen:
        raise UsageError("no request trace given; give at least one Azure-format CSV")
    return _token_mix(tuple(chosen))


@dataclass(frozen=True)
class _WeekShape:
    shapes: np.ndarray  # (14, 144) ten-minute rates over their day's mean
    weekday_level: np.ndarray  # (7,) Monday first, mean 1 over the 14 days
    day_factors: np.ndarray  # (14,) observed day level over its weekday's level, widened, mean 1


@functools.lru_cache(maxsize=1)
def _week_shape() -> _WeekShape:
    frame = pd.read_csv(SERVEGEN_FILE)
    rates = frame["total_rate_req_per_s"].to_numpy(float)
    per_day = 86_400 // SERVEGEN_WINDOW_S
    days = rates.reshape(-1, per_day)  # 14 × 144; the file is 2016 whole windows from midnight
    means = days.mean(axis=1)
    levels = means / means.mean()
    weekdays = (SERVEGEN_DAY0_WEEKDAY + np.arange(len(days))) % 7
    weekday_level = np.array([levels[weekdays == w].mean() for w in range(7)])
    resid = np.log(levels / weekday_level[weekdays])
    # Residuals about a two-day mean have half the variance of the days themselves: widen them
    # by sqrt(n / (n − 7)) so their spread is the unbiased day-to-day one.
    widened = np.exp(resid * np.sqrt(len(days) / (len(days) - 7)))
    return _WeekShape(
        shapes=days / means[:, None],
        weekday_level=weekday_level,
        day_factors=widened / widened.mean(),
    )


def _check_index(index: pd.DatetimeIndex) -> None:
    if not isinstance(index, pd.DatetimeIndex) or len(index) == 0:
        raise UsageError("the time index must be a non-empty pandas DatetimeIndex")
    if len(index) > 1 and _index_step_s(index) <= 0:
        raise UsageError("the time index must run forward in time")


def _index_step_s(index: pd.DatetimeIndex) -> float:
    """The index's usual step (s), not each difference.

    Wall-clock profiles (SimBench) repeat an hour when summer time ends and skip one when it starts.
    """
    diffs = np.diff(index.asi8)
    values, counts = np.unique(diffs, return_counts=True)
    return float(values[np.argmax(counts)]) / 1e9


def _step_bounds(index: pd.DatetimeIndex, default_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each step in seconds of elapsed time from the first step."""
    step = _index_step_s(index) if len(index) > 1 else default_s
    start = np.arange(len(index)) * step
    return start, start + step


def _wall_clock(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_localize(None) if index.tz is not None else index


def _mean_of_linear(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over ``[a, b)`` of the piecewise-linear curve through ``(x, y)`` (exact)."""
    area = np.concatenate([[0.0], np.cumsum((y[1:] + y[:-1]) / 2 * np.diff(x))])
    slope = np.diff(y) / np.diff(x)

    def integral(t: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
        dt = t - x[k]
        return area[k] + y[k] * dt + slope[k] * dt**2 / 2

    return (integral(b) - integral(a)) / (b - a)


def demand_shape(index: pd.DatetimeIndex, seed: int = 0) -> pd.Series:
    """Relative fleet demand at each step of ``index`` (peak 1.0), built as the module says."""
    _check_index(index)
    week = _week_shape()
    mix = token_mix()
    rng = np.random.default_rng(seed)

    wall = _wall_clock(index)
    start_s, end_s = _step_bounds(index, SERVEGEN_WINDOW_S)
    # One padding day on each side so every step lies between two curve points.
    first = wall[0].normalize() - pd.Timedelta(days=1)
    last_end = wall[-1] + pd.Timedelta(seconds=float(end_s[-1] - start_s[-1]))
    n_days = (last_end.normalize() - first).days + 2
    days = pd.date_range(first, periods=n_days, freq="D")

    weekday = days.weekday.to_numpy()
    week_pick = rng.integers(0, 2, size=n_days)
    factor = rng.choice(week.day_factors, size=n_days)
    servegen_day = (weekday - SERVEGEN_DAY0_WEEKDAY) % 7 + 7 * week_pick
    scale = week.weekday_level[weekday] * factor
    values = (week.shapes[servegen_day] * scale[:, None]).ravel()

    per_day = week.shapes.shape[1]
    centres = (np.arange(n_days)[:, None] * 86_400 + (np.arange(per_day) + 0.5) * SERVEGEN_WINDOW_S).ravel()
    # Steps in wall-clock seconds from the first padding day; step lengths in real seconds.
    offset = (wall[0] - first).total_seconds()
    a = offset + ((wall.asi8 - wall.asi8[0]) / 1e9)
    b = a + (end_s - start_s)
    mean = _mean_of_linear(centres.astype(float), values, a, b)

    # ServeGen's 10-minute rates already hold the variability of 10 minutes and longer; only
    # what a shorter step adds on top is drawn as noise (none at 10 minutes and longer).
    cv2 = np.maximum(mix.step_cv(end_s - start_s) ** 2 - mix.step_cv(SERVEGEN_WINDOW_S) ** 2, 0.0)
    s2 = np.log1p(cv2)
    noise = np.exp(np.sqrt(s2) * rng.standard_normal(len(index)) - s2 / 2)
    demand = mean * noise
    return pd.Series(demand / demand.max(), index=index, name="demand")


def fleet_demand(index: pd.DatetimeIndex, peak_tokens_per_s: float, seed: int = 0) -> pd.DataFrame:
    """Fleet demand (tokens/s) with total peak ``peak_tokens_per_s``, split by the Azure mix."""
    if not np.isfinite(peak_tokens_per_s) or peak_tokens_per_s <= 0:
        raise UsageError(f"peak demand {peak_tokens_per_s} tokens/s must be positive")
    total = demand_shape(index, seed).to_numpy() * peak_tokens_per_s
    share = token_mix().prefill_share
    return pd.DataFrame(
        {DEMAND_COLUMNS[0]: total * share, DEMAND_COLUMNS[1]: total * (1 - share)}, index=index
    )


def _parse_times(path: Path, raw: pd.Series, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    text = raw.astype(str).str.strip()
    has_offset = text.str.contains(_OFFSET)
    if has_offset.any() and index.tz is None:
        line = int(np.argmax(has_offset.to_numpy())) + 2
        raise DataError(
            f"{path}: line {line} has a time-zone offset ({text.iloc[line - 2]}); "
            "give local times without an offset"
        )
    if has_offset.any() and not has_offset.all():
        line = int(np.argmin(has_offset.to_numpy())) + 2
        raise DataError(f"{path}: line {line} has no time-zone offset while others do; use one form")
    times = pd.to_datetime(text, errors="coerce", utc=bool(has_offset.any()))
    if times.isna().any():
        line = int(np.argmax(times.isna().to_numpy())) + 2
        raise DataError(
            f"{path}: line {line}: cannot read time '{text.iloc[line - 2]}'; use YYYY-MM-DD HH:MM"
        )
    parsed = pd.DatetimeIndex(times)
    if index.tz is not None:
        if parsed.tz is None:
            try:
                parsed = parsed.tz_localize(index.tz, ambiguous="raise", nonexistent="raise")
            except (ValueError, TypeError) as exc:  # pytz/zoneinfo DST errors are ValueErrors
                raise DataError(f"{path}: {exc}; give times with an offset around clock changes") from None
        else:
            parsed = parsed.tz_convert(index.tz)
    return parsed


def _fmt_step(step_ns: int) -> str:
    seconds = int(step_ns) // 10**9
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{pd.Timedelta(int(step_ns))}"


def _regular_step(path: Path, times: pd.DatetimeIndex) -> int:
    """Step of the file (ns); refuse gaps and irregular steps, naming the first."""
    diffs = np.diff(times.asi8)
    values, counts = np.unique(diffs, return_counts=True)
    step = values[np.argmax(counts)]
    bad = diffs != step
    if bad.any():
        i = int(np.argmax(bad))
        if np.all(diffs[bad] % step == 0) and np.all(diffs[bad] > step):
            missing = int(np.sum(diffs[bad] // step - 1))
            raise DataError(
                f"{path}: gap after {times[i]} (next is {times[i + 1]}); {missing} time(s) missing "
                f"in all at the {_fmt_step(step)} step; fill them"
            )
        raise DataError(
            f"{path}: irregular step after {times[i]} (next is {times[i + 1]}, usual step "
            f"{_fmt_step(step)}); give one row per regular step"
        )
    return int(step)


def read_demand_csv(path: Path, index: pd.DatetimeIndex) -> pd.DataFrame:
    """User demand (tokens/s) from a CSV, on exactly ``index``; replaces the model.

    The CSV has a ``time`` column (each row is the mean rate from that time to the next) and
    either both ``prefill_tokens_per_s`` and ``decode_tokens_per_s`` or one ``tokens_per_s``
    (split by the Azure mix). A coarser file is held constant over each of its rows; a finer
    one is averaged over each index step. Bad input raises :class:`UsageError` naming the file.
    """
    path = Path(path)
    _check_index(index)
    if not path.is_file():
        raise UsageError(f"{path}: demand file not found; give the path of an existing CSV")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the demand CSV ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if "time" not in frame.columns:
        raise DataError(f"{path}: needs a 'time' column")
    if set(DEMAND_COLUMNS) <= set(frame.columns):
        columns = DEMAND_COLUMNS
    elif "tokens_per_s" in frame.columns:
        columns = ["tokens_per_s"]
    else:
        raise DataError(f"{path}: needs columns {' and '.join(DEMAND_COLUMNS)}, or one tokens_per_s column")
    if len(frame) < 2:
        raise DataError(f"{path}: needs at least two rows to know its time step")

    times = _parse_times(path, frame["time"], index)
    values = np.empty((len(frame), len(columns)))
    for j, col in enumerate(columns):
        numbers = pd.to_numeric(frame[col].str.strip(), errors="coerce").to_numpy(float)
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{path}: line {i + 2}: {col} '{frame[col].iloc[i]}' is not a number")
        if (numbers < 0).any():
            i = int(np.argmax(numbers < 0))
            raise DataError(f"{path}: line {i + 2}: {col} {numbers[i]} is negative; demand must be ≥ 0")
        if (numbers > MAX_TOKENS_PER_S).any():
            i = int(np.argmax(numbers > MAX_TOKENS_PER_S))
            raise DataError(
                f"{path}: line {i + 2}: {col} {numbers[i]:g} is not a realistic demand "
                f"(more than {MAX_TOKENS_PER_S:g} tokens/s); check the units"
            )
        values[:, j] = numbers

    if len(times) == len(index) and (times.asi8 == index.asi8).all():
        # the study's own steps, row for row: a wall-clock index repeats the hour when daylight
        # saving ends, and a file written from it repeats it too
        return _demand_frame(values, columns, index)
    if times.has_duplicates:
        i = int(np.argmax(times.duplicated()))
        raise DataError(f"{path}: line {i + 2}: time {times[i]} appears twice; give each time once")
    order = np.argsort(times.asi8, kind="stable")
    times, values = times[order], values[order]
    step = _regular_step(path, times)

    idx_start, idx_end = _step_bounds(index, step / 1e9)
    origin = index.asi8[0]
    file_start = (times.asi8 - origin) / 1e9
    file_end = file_start[-1] + step / 1e9
    if file_start[0] > idx_start[0] or file_end < idx_end[-1]:
        need_end = index[0] + pd.Timedelta(seconds=float(idx_end[-1]))
        have_end = times[-1] + pd.Timedelta(int(step))
        raise DataError(
            f"{path}: covers {times[0]} to {have_end}; the study needs {index[0]} to {need_end}; "
            "give demand for the whole span"
        )

    # Each row is a constant rate over [t, t + step): integrate the step function exactly.
    edges = np.append(file_start, file_end)
    area = np.vstack([np.zeros(len(columns)), np.cumsum(values * (step / 1e9), axis=0)])

    def integral(t: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(values) - 1)
        return area[k] + values[k] * (t - edges[k])[:, None]

    mean = (integral(idx_end) - integral(idx_start)) / (idx_end - idx_start)[:, None]
    mean = np.maximum(mean, 0.0)  # rounding only; inputs are ≥ 0
    return _demand_frame(mean, columns, index)


def _demand_frame(values: np.ndarray, columns: list[str], index: pd.DatetimeIndex) -> pd.DataFrame:
    """Demand per step in DEMAND_COLUMNS; a total alone is split by the Azure token mix."""
    if columns == DEMAND_COLUMNS:
        return pd.DataFrame(values, index=index, columns=DEMAND_COLUMNS)
    share = token_mix().prefill_share
    total = values[:, 0]
    return pd.DataFrame(
        {DEMAND_COLUMNS[0]: total * share, DEMAND_COLUMNS[1]: total * (1 - share)}, index=index
    )
