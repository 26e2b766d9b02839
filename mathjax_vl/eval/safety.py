"""Guards that let every extraction and matching rule return a verdict for ANY string.

Model responses are arbitrary text: "-infinity", "1e400", "nan", a megabyte of digits, unicode.
Conversions go through `safe_float` / `safe_int_str` (never raise), and symbolic work (sympy,
math-verify) runs under `bounded_call`, which gives up after a time bound and returns a default.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

# Responses longer than this are cut to their head and tail before extraction: the answer a
# response commits to is stated at its start or its end, and regexes stay linear-time bounded.
MAX_RESPONSE_CHARS = 20_000
HEAD_CHARS = 4_000


class _Timeout(Exception):
    pass


def clip_response(text: object) -> str:
    """`text` as a str, cut to head + tail when it is longer than MAX_RESPONSE_CHARS."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if len(text) <= MAX_RESPONSE_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-(MAX_RESPONSE_CHARS - HEAD_CHARS) :]


def safe_float(text: object) -> float | None:
    """float(text) or None; inf and nan are returned as floats (callers decide)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            return float(text)
        except OverflowError:
            return math.copysign(math.inf, text)
    if not isinstance(text, str) or len(text) > 400:
        return None
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def safe_int_str(value: float | None) -> str | None:
    """str(int(value)) for finite values; None for None, inf and nan (no OverflowError)."""
    if value is None or not math.isfinite(value):
        return None
    return str(int(value))


def safe_round_str(value: float | None, precision: int) -> str | None:
    """str(round(value, precision)) for finite values, else None."""
    if value is None or not math.isfinite(value):
        return None
    try:
        return str(round(value, int(precision)))
    except (OverflowError, ValueError):
        return None


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def fire(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, fire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:
            signal.setitimer(signal.ITIMER_REAL, old_delay, old_interval)


def bounded_call(fn: Callable[[], T], *, default: T, seconds: float) -> T:
    """fn() or `default` when it raises or runs past `seconds` (SIGALRM in the main thread; in
    other threads the exception guard still applies but the time bound cannot)."""
    try:
        if threading.current_thread() is threading.main_thread():
            with _alarm(seconds):
                return fn()
        return fn()
    except _Timeout:
        return default
    except Exception:
        return default
    except RecursionError:
        return default
