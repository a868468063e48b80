"""The plan's regular expressions: screened for backtracking, and run on RE2 where ``re`` could blow up.

Python's ``re`` backtracks: ``^(a+)+$`` takes seconds for a 27-character value
and doubles with each more. A pattern that nests quantifiers, repeats a group
with alternatives that can start alike, or uses a backreference runs on RE2
(the ``google-re2`` package, in the ``[plan]`` extra; linear time), and is
refused when RE2 is not installed or cannot compile it. Other patterns run on
``re``, which is faster for short values, up to
:data:`MAX_BACKTRACKING_VALUE_CHARS`; a longer value goes to RE2, or, without
it, does not match.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any, Optional

from segment_lite.errors import InvalidStateError

__all__ = [
    "MAX_BACKTRACKING_VALUE_CHARS",
    "MAX_PATTERN_CHARS",
    "Pattern",
    "compile_pattern",
    "engine",
    "pattern_problem",
    "search",
]

#: The longest ``pattern`` (or ``patternProperties`` key) a plan may hold.
MAX_PATTERN_CHARS = 1000
#: Without RE2: a longer string does not match a pattern (it is not tried), so a check stays bounded.
MAX_BACKTRACKING_VALUE_CHARS = 1000

try:  # pragma: no cover - which branch runs depends on what is installed
    _re2: Any = importlib.import_module("re2")  # google-re2 ships no type stubs
except ImportError:  # pragma: no cover
    _re2 = None

try:
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    import sre_constants as _sre_constants
    import sre_parse as _sre_parse

# What fastjsonschema does to ``pattern``: ``$`` ends the string, as in ECMA-262, not before a last newline.
_DOLLAR = re.compile(r"(?<!\\)\$")


def engine() -> str:
    """``"re2"`` when google-re2 is installed (patterns run in linear time), else ``"re"``."""
    return "re2" if _re2 is not None else "re"


class Pattern:
    """A compiled plan pattern with the ``search``/``match`` of ``re``, bounded in time.

    A pattern without a backtracking shape runs on ``re`` (the fastest for short
    values) up to :data:`MAX_BACKTRACKING_VALUE_CHARS`; longer values, and every
    value for a pattern with such a shape, go to RE2. Without RE2 a longer value
    does not match (it is not tried). ``re`` runs with ``re.ASCII``, so ``\\d``,
    ``\\w`` and ``\\s`` mean what they mean on RE2 and in ECMA-262.
    """

    __slots__ = ("_re", "_re2", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._re2: Any = _re2_compile(pattern)
        self._re: Optional[re.Pattern[str]] = None
        if _backtracking_problem(list(_sre_parse.parse(pattern)), inside_repeat=False) is None:
            self._re = re.compile(_DOLLAR.sub(r"\\Z", pattern), re.ASCII)

    def _engine(self, text: str) -> Any:
        if self._re is not None and (len(text) <= MAX_BACKTRACKING_VALUE_CHARS or self._re2 is None):
            return self._re if len(text) <= MAX_BACKTRACKING_VALUE_CHARS else None
        return self._re2

    def search(self, text: str) -> Any:
        """A match object or None, like ``re.Pattern.search``."""
        engine = self._engine(text)
        return None if engine is None else engine.search(text)

    def match(self, text: str) -> Any:
        """A match at the start or None, like ``re.Pattern.match``."""
        engine = self._engine(text)
        return None if engine is None else engine.match(text)

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


def _re2_compile(pattern: str) -> Any:
    if _re2 is None:
        return None
    options = _re2.Options()
    options.log_errors = False  # RE2 would write each refused pattern to stderr
    try:
        return _re2.compile(pattern, options)
    except Exception:  # a feature RE2 lacks (backreference, lookaround): re, screened, runs it
        return None


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Pattern:
    """The :class:`Pattern` for ``pattern`` (cached); call :func:`pattern_problem` first."""
    return Pattern(pattern)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` is found in ``text``, as a plan check decides it."""
    return compile_pattern(pattern).search(text) is not None


def pattern_problem(pattern: str) -> Optional[str]:
    """Why ``pattern`` is refused in a plan, or None when it can be used."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}"
    try:
        parsed = _sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"is not a valid regular expression: {exc}"
    problem = _backtracking_problem(list(parsed), inside_repeat=False)
    if problem is None or _re2_compile(pattern) is not None:
        return None  # re cannot blow up on it, or RE2 runs it in linear time
    hint = "" if _re2 is not None else " (or install google-re2: pip install 'segment-lite[plan]')"
    return f"could take exponential time to match: {problem}; rewrite it{hint}"


_REPEATS = {_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT}


def _backtracking_problem(items: list[Any], inside_repeat: bool) -> Optional[str]:
    """The shape in a parsed pattern that makes ``re`` backtrack exponentially, or None."""
    for op, value in items:
        if op in _REPEATS:
            low, high, body = value
            repeats = high > 1  # MAXREPEAT (unbounded) is a large int
            if inside_repeat and low != high:  # a fixed count such as {3} cannot split two ways
                return "a quantifier inside a quantified group, e.g. (a+)+"
            found = _backtracking_problem(list(body), inside_repeat or repeats)
            if found:
                return found
        elif op is _sre_constants.SUBPATTERN:
            found = _backtracking_problem(list(value[-1]), inside_repeat)
            if found:
                return found
        elif op is _sre_constants.BRANCH:
            branches = value[1]
            if inside_repeat and not _distinct_starts(branches):
                return "alternatives that can start alike inside a quantified group, e.g. (a|ab)*"
            for branch in branches:
                found = _backtracking_problem(list(branch), inside_repeat)
                if found:
                    return found
        elif op is _sre_constants.GROUPREF or op is _sre_constants.GROUPREF_EXISTS:
            return "a backreference"
        elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
            found = _backtracking_problem(list(value[1]), inside_repeat)
            if found:
                return found
    return None


def _distinct_starts(branches: list[Any]) -> bool:
    """Whether each alternative starts with its own literal character (then only one can go on)."""
    seen: set[int] = set()
    for branch in branches:
        items = list(branch)
        if not items or items[0][0] is not _sre_constants.LITERAL or items[0][1] in seen:
            return False
        seen.add(items[0][1])
    return True


def harden_fast_validator(validate: Any, patterns: set[str]) -> None:
    """Make a fastjsonschema validator match the plan's ``patterns`` through :func:`compile_pattern`.

    fastjsonschema keeps its compiled expressions in the ``REGEX_PATTERNS`` global
    of the code it generated; its own format expressions are left alone.
    """
    function = getattr(validate, "__wrapped__", None) or getattr(validate, "func", None) or validate
    table = getattr(function, "__globals__", {}).get("REGEX_PATTERNS")
    if not isinstance(table, dict):
        if not patterns:
            return
        # fastjsonschema changed where it keeps them: refuse rather than run unbounded expressions.
        raise InvalidStateError("cannot reach fastjsonschema's compiled patterns to bound them")
    for key in list(table):
        if key in patterns:
            table[key] = compile_pattern(key)
