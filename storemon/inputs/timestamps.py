"""The vectorised timestamp parser: a whole Arrow column of timestamps at once.

`parse_timestamps_arrow(column) -> (epoch µs, ok)` reads eight bytes at a time as
one integer and checks and converts digits with bit operations, block by block;
what it cannot read that way (another form, an odd suffix) goes through
`values.parse_timestamp`, so both accept exactly the same texts.
"""
from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date as date_type

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

from storemon.inputs.values import RowError, parse_timestamp
from storemon.timebase import US_PER_DAY, US_PER_SECOND

# ---------------------------------------------------------------------------------------
# Vectorised timestamp parsing
# ---------------------------------------------------------------------------------------


def _memory_pool() -> pa.MemoryPool:
    # Arrow's default (mimalloc) was about twice as slow to read the Loop-scale file on
    # fresh memory as jemalloc or the system allocator.
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.system_memory_pool()


#: The Arrow memory pool the parser and the CSV readers allocate from.
ARROW_POOL = _memory_pool()
_DIGIT_0 = ord("0")
#: Rows per block of the timestamp parser: a block's bytes stay in the CPU cache.
_BLOCK_ROWS = 1 << 15
_WINDOW_BYTES = 32
_U64 = np.uint64


def _bytes_word(text: bytes) -> np.uint64:
    """Little-endian 8-byte word: the first byte of `text` is the least significant."""
    return _U64(int.from_bytes(text.ljust(8, b"\0"), "little"))


def _byte_mask(positions: Iterable[int]) -> np.uint64:
    return _U64(sum(0xFF << (8 * position) for position in positions))


_ZEROS = _bytes_word(b"00000000")
_LOW_BYTES = _U64(0x00FF00FF00FF00FF)
_LOW_PAIRS = _U64(0x0000FFFF0000FFFF)
_LOW_HALF = _U64(0xFFFFFFFF)
_HIGH_BITS = _U64(0x8080808080808080)
_DIGIT_LIMIT = _U64(0x7676767676767676)  # a byte x <= 9 stays below 0x80 after adding 0x76
# Words (after ^ '0') of bytes 0-7 `YYYY-MM-`, 8-15 `DD?hh:mm`, 16-18 `:ss`.
_DATE_DIGITS = _byte_mask([0, 1, 2, 3, 5, 6])
_DATE_FIXED = _byte_mask([4, 7])
_DATE_TEMPLATE = (_bytes_word(b"0000-00-") ^ _ZEROS) & _DATE_FIXED
_CLOCK_DIGITS = _byte_mask([0, 1, 3, 4, 6, 7])
_CLOCK_FIXED = _byte_mask([5])
_CLOCK_TEMPLATE = (_bytes_word(b"00000:00") ^ _ZEROS) & _CLOCK_FIXED
_SEPARATOR_BYTE = _byte_mask([2])
_SPACE_SEPARATOR = (_bytes_word(b"00 ") ^ _ZEROS) & _SEPARATOR_BYTE
_T_SEPARATOR = (_bytes_word(b"00T") ^ _ZEROS) & _SEPARATOR_BYTE
_SECONDS_DIGITS = _byte_mask([1, 2])
_SECONDS_FIXED = _byte_mask([0])
_SECONDS_TEMPLATE = (_bytes_word(b":") ^ _ZEROS) & _SECONDS_FIXED
_UTC_SUFFIX = _U64(int.from_bytes(b" UTC", "little"))


def _month_tables() -> tuple[np.ndarray, np.ndarray]:
    """Days since the epoch of each month's first day, and the month's length, for the
    years `_TABLE_FIRST_YEAR` … `_TABLE_LAST_YEAR`, indexed `(year - first) * 16 + month`.
    Slots of months 0 and 13-15 have length 0, so they never validate."""
    years = range(_TABLE_FIRST_YEAR, _TABLE_LAST_YEAR + 1)
    starts = np.zeros(len(years) * 16, dtype=np.int64)
    lengths = np.zeros(len(years) * 16, dtype=np.int64)
    epoch = date_type(1970, 1, 1)
    for index, year in enumerate(years):
        for month in range(1, 13):
            starts[index * 16 + month] = (date_type(year, month, 1) - epoch).days
            lengths[index * 16 + month] = calendar.monthrange(year, month)[1]
    return starts, lengths


# The vectorised parser handles these years; others go through `parse_timestamp`.
_TABLE_FIRST_YEAR, _TABLE_LAST_YEAR = 1970, 2199
_MONTH_START_DAY, _MONTH_LENGTH = _month_tables()


def _non_digit_bits(word: np.ndarray, digit_mask: np.uint64) -> np.ndarray:
    """High bits set in the bytes under `digit_mask` that are not digits (word ^ '0')."""
    digits = word & digit_mask
    return (digits + _DIGIT_LIMIT) | digits


def _byte(word: np.ndarray, index: int) -> np.ndarray:
    return (word >> _U64(8 * index)) & _U64(0xFF)


def _digit_pairs(word: np.ndarray) -> np.ndarray:
    """Two-digit values of bytes (0,1), (2,3), (4,5), (6,7) in 16-bit lanes (word ^ '0')."""
    return ((word & _LOW_BYTES) * _U64(10) + ((word >> _U64(8)) & _LOW_BYTES)) & _LOW_BYTES


def _lane(word: np.ndarray, index: int) -> np.ndarray:
    return ((word >> _U64(16 * index)) & _U64(0xFFFF)).astype(np.int64)


def _eight_digits(word: np.ndarray) -> np.ndarray:
    """The number written by 8 digit bytes (word ^ '0'; first byte most significant)."""
    word = _digit_pairs(word)
    word = (word * _U64(100) + (word >> _U64(16))) & _LOW_PAIRS
    return ((word * _U64(10000) + (word >> _U64(32))) & _LOW_HALF).astype(np.int64)


def _parse_timestamp_block(
    windows: np.ndarray, start: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`parse_timestamp` for the rows at byte `start` (`length` bytes): (epoch µs, ok).

    `windows[i]` is the 32 bytes from byte i of the buffer (a strided view), so one
    gather brings a row in as four little-endian words, and each arithmetic operation
    then handles 8 bytes of every row. Rows with `ok` False go to `parse_timestamp`
    (they may be valid but unusual, e.g. longer than 32 bytes); the tests compare the
    two on random strings.
    """
    words = windows[start].view("<u8")
    ok = (length - 20).view(np.uint64) <= 32 - 20
    date = words[:, 0] ^ _ZEROS  # YYYY-MM-
    clock = words[:, 1] ^ _ZEROS  # DD hh:mm
    seconds = words[:, 2] ^ _ZEROS  # :ss and what follows
    rest = words[:, 3] ^ _ZEROS
    separator = clock & _SEPARATOR_BYTE
    ok &= (date & _DATE_FIXED) == _DATE_TEMPLATE
    ok &= (clock & _CLOCK_FIXED) == _CLOCK_TEMPLATE
    ok &= (separator == _SPACE_SEPARATOR) | (separator == _T_SEPARATOR)
    ok &= (seconds & _SECONDS_FIXED) == _SECONDS_TEMPLATE
    ok &= (
        (
            _non_digit_bits(date, _DATE_DIGITS)
            | _non_digit_bits(clock, _CLOCK_DIGITS)
            | _non_digit_bits(seconds, _SECONDS_DIGITS)
        ) & _HIGH_BITS
    ) == 0
    # Digit pairs in 16-bit lanes: YY YY ?M M? / DD ?h h? mm / ?s s? ...
    date_pairs, clock_pairs = _digit_pairs(date), _digit_pairs(clock)
    shifted_date, shifted_clock = _digit_pairs(date >> _U64(8)), _digit_pairs(clock >> _U64(8))
    year = _lane(date_pairs, 0) * 100 + _lane(date_pairs, 1)
    month = _lane(shifted_date, 2)
    day = _lane(clock_pairs, 0)
    hour = _lane(shifted_clock, 1)
    minute = _lane(clock_pairs, 3)
    second = _lane(_digit_pairs(seconds >> _U64(8)), 0)
    month_slot = (year - _TABLE_FIRST_YEAR) * 16 + month
    ok &= (month_slot >= 0) & (month_slot < len(_MONTH_LENGTH)) & (month <= 12)
    month_slot[~ok] = 0
    ok &= (day >= 1) & (day <= _MONTH_LENGTH[month_slot])
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)

    # The last 8 bytes of the row (bytes length-8 … length-1 of the window).
    tail_byte = np.clip(length - 8, 8, 24).astype(np.uint64)
    tail_word = tail_byte >> _U64(3)
    shift = (tail_byte & _U64(7)) * _U64(8)
    low = np.where(tail_word == 1, clock, np.where(tail_word == 2, seconds, rest)) ^ _ZEROS
    high = np.where(tail_word == 1, seconds, np.where(tail_word == 2, rest, 0)) ^ _ZEROS
    # numpy defines shifts by 64 or more as 0, which the rows ending at byte 32 need.
    tail = (low >> shift) | np.where(shift == 0, _U64(0), high << (_U64(64) - shift))
    last = tail >> _U64(56)
    zulu = (last == ord("Z")) | (last == ord("z"))
    utc = (tail >> _U64(32)) == _UTC_SUFFIX
    suffix_length = np.where(zulu, 1, np.where(utc, 4, 0))
    offset_us = np.zeros(len(start), dtype=np.int64)
    numeric = ~(zulu | utc) & ok
    if numeric.any():
        rows = np.flatnonzero(numeric)
        offset_us[rows], suffix_length[rows], numeric_ok = _numeric_offsets(tail[rows])
        ok[rows] &= numeric_ok

    # Between the seconds and the suffix: nothing, or a dot and 1 to 9 digits (bytes
    # 20-28: the top half of the seconds word and the start of the next word).
    fraction_digits = length - 20 - suffix_length
    has_fraction = fraction_digits >= 1
    ok &= (suffix_length > 0) & ((fraction_digits == -1) | (
        has_fraction & (fraction_digits <= 9) & (_byte(seconds, 3) == (ord(".") ^ _DIGIT_0))
    ))
    digits = np.clip(fraction_digits, 0, 8).astype(np.uint64)
    # Bytes past the last digit count as '0' (0 after the xor), so the 8 bytes read as
    # the fraction in units of 10 ns; shifting by 64 clears the whole word.
    kept = np.where(digits == 8, ~_U64(0), ~(~_U64(0) << (digits * _U64(8))))
    fraction = ((seconds >> _U64(32)) | (rest << _U64(32))) & kept
    ninth = np.where(fraction_digits == 9, _byte(rest, 4), _U64(0))
    ok &= ((_non_digit_bits(fraction, ~_U64(0)) & _HIGH_BITS) == 0) & (ninth <= 9)
    micros = _eight_digits(fraction) // 100  # digits past 6 are truncated
    epoch_us = (
        (_MONTH_START_DAY[month_slot] + day - 1) * US_PER_DAY
        + (hour * 3600 + minute * 60 + second) * US_PER_SECOND
        + micros
        - offset_us
    )
    return epoch_us, ok


def _numeric_offsets(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`+HH:MM` / `+HHMM` suffixes in the last 8 bytes: (offset µs, suffix length, ok)."""

    def byte(index: int) -> np.ndarray:
        return ((tail >> _U64(8 * index)) & _U64(0xFF)).astype(np.int64)

    def digits(first: int, second: int) -> tuple[np.ndarray, np.ndarray]:
        high, low = byte(first) - _DIGIT_0, byte(second) - _DIGIT_0
        return high * 10 + low, (high >= 0) & (high <= 9) & (low >= 0) & (low <= 9)

    with_colon = np.isin(byte(2), [ord("+"), ord("-")]) & (byte(5) == ord(":"))
    plain = np.isin(byte(3), [ord("+"), ord("-")]) & ~with_colon
    colon_hours, colon_hours_ok = digits(3, 4)
    plain_hours, plain_hours_ok = digits(4, 5)
    minutes, minutes_ok = digits(6, 7)
    hours = np.where(with_colon, colon_hours, plain_hours)
    ok = (with_colon | plain) & np.where(with_colon, colon_hours_ok, plain_hours_ok)
    ok &= minutes_ok & (hours <= 23) & (minutes <= 59)
    sign = np.where(with_colon, byte(2), byte(3))
    magnitude = (hours * 3600 + minutes * 60) * US_PER_SECOND
    offset = np.where(sign == ord("-"), -magnitude, magnitude)
    return offset, np.where(with_colon, 6, 5), ok


def _string_chunk_parts(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The int64 offsets (length + 1) and the byte buffer of an Arrow string array."""
    chunk = chunk.cast(pa.large_string())
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(
        offsets_buffer, dtype=np.int64, count=len(chunk) + 1, offset=chunk.offset * 8
    )
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    return offsets, data


def _windows(data: np.ndarray) -> np.ndarray:
    """The 32 bytes from every byte of `data` on (a strided view; the last 31 are absent)."""
    if len(data) < _WINDOW_BYTES:
        data = np.concatenate([data, np.zeros(_WINDOW_BYTES, np.uint8)])
    return sliding_window_view(data, _WINDOW_BYTES)


#: Suffixes of the common forms, for the all-rows-alike fast path.
_UNIFORM_SUFFIXES = (" UTC", "Z")
#: Everything before the suffix: `YYYY-MM-DD hh:mm:ss` and an optional fraction.
_SHORTEST_CLOCK = 19


def _parse_uniform_suffix(column: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Epoch µs when every row has the same UTC suffix and is valid, else None.

    This is the Loop file's case, and Arrow's C++ ISO-8601 parser then does the work in
    one pass. Once the suffix is cut, Arrow accepts `YYYY-MM-DD[ T]hh:mm:ss[.f{1,9}]`
    plus shorter forms (`YYYY-MM-DD`, `… hh`, `… hh:mm`) that the length check rules out,
    which is exactly what `parse_timestamp` accepts before such a suffix.
    """
    if len(column) == 0:
        return None
    for suffix in _UNIFORM_SUFFIXES:
        if not pc.all(pc.ends_with(column, suffix, memory_pool=ARROW_POOL)).as_py():
            continue
        shortest = pc.min(pc.binary_length(column)).as_py()
        if shortest < _SHORTEST_CLOCK + len(suffix):
            return None
        try:
            stripped = pc.utf8_slice_codeunits(column, 0, -len(suffix), memory_pool=ARROW_POOL)
            nanos = pc.cast(stripped, pa.timestamp("ns"), memory_pool=ARROW_POOL)
        except pa.ArrowInvalid:  # an invalid row, or a year nanoseconds cannot hold
            return None
        chunks = nanos.chunks if isinstance(nanos, pa.ChunkedArray) else [nanos]
        values = np.concatenate([
            np.frombuffer(chunk.buffers()[1], np.int64, len(chunk), chunk.offset * 8)
            for chunk in chunks
        ])
        # Floor division truncates the fraction past microseconds, as parse_timestamp does.
        return values // 1000
    return None


def parse_timestamps_arrow(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `parse_timestamp` over an Arrow string column: (epoch µs int64, ok bool).

    Rows the vectorised parser rejects go through `parse_timestamp` one by one, so the
    outcome is always the per-row function's.
    """
    uniform = _parse_uniform_suffix(column)
    if uniform is not None:
        return uniform, np.ones(len(uniform), dtype=bool)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    values_parts, ok_parts = [], []
    for chunk in chunks:
        offsets, data = _string_chunk_parts(chunk)
        windows = _windows(data)
        values = np.zeros(len(chunk), dtype=np.int64)
        ok = np.zeros(len(chunk), dtype=bool)
        # The block parser reads 32 bytes from each row's start; the last rows of the
        # buffer may not have them and are left to the row-by-row parser.
        safe_rows = int(np.searchsorted(offsets[:-1], len(windows) - 1, side="right"))
        for first in range(0, safe_rows, _BLOCK_ROWS):
            last = min(first + _BLOCK_ROWS, safe_rows)
            block_offsets = offsets[first : last + 1]
            values[first:last], ok[first:last] = _parse_timestamp_block(
                windows, block_offsets[:-1], np.diff(block_offsets)
            )
        for row in np.flatnonzero(~ok).tolist():
            text = bytes(data[offsets[row] : offsets[row + 1]]).decode("utf-8", "replace")
            try:
                values[row] = parse_timestamp(text)
                ok[row] = True
            except RowError:
                pass
        values_parts.append(values)
        ok_parts.append(ok)
    if not values_parts:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(values_parts), np.concatenate(ok_parts)

