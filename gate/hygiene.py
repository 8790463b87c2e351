"""Row-level content flags: length, refusal or error text, non-text."""

from __future__ import annotations

import numpy as np
import pandas as pd

REFUSAL = (
    r"(?i)\b(?:i'?m sorry|i am sorry|i apologi[sz]e|as an ai\b|i (?:can(?:no|')t|cannot|am unable"
    r" to|'m unable to|won'?t be able to) (?:help|assist|comply|provide|do that|fulfil))"
)
# "error:" or "SomeException:" (the word may have any prefix); written without a leading
# `\b\w*`, which matches the same texts but backtracks over every word.
ERROR_TEXT = (
    r"(?i)(?:traceback \(most recent call last\)|(?:error|exception)\s*:|"
    r"\binternal server error\b)"
)
# Every REFUSAL or ERROR_TEXT match contains one of these (case-insensitively); ASCII texts
# without any of them need not be searched with the regexes.
_KEYWORDS = (
    *("sorry", "apologi", "as an ai", "help", "assist", "comply", "provide", "do that", "fulfil"),
    *("traceback", "error", "exception"),
)
JSON_BLOB = r"^\s*(?:\{[\s\S]*\}|\[[\s\S]*\])\s*$"
MIN_LETTER_SHARE = 0.5

FLAGS = {
    "length": ("empty", "too_short", "too_long"),
    "refusal_or_error": ("refusal", "error_text"),
    "non_text": ("control_chars", "few_letters", "json_blob"),
}


_BYTES = np.arange(256)
_SPACE = np.isin(_BYTES, np.frombuffer(b" \t\r\n", dtype=np.uint8))
_LETTER = np.isin(_BYTES | 0x20, np.arange(ord("a"), ord("z") + 1)) | (_BYTES >= 0xC0)
_VISIBLE = ~_SPACE & ~((_BYTES >= 0x80) & (_BYTES < 0xC0))
_CONTROL = ((_BYTES < 0x20) & ~_SPACE) | (_BYTES == 0x7F)


def _letter_share_and_control(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per text: share of letters among non-space characters, and presence of control chars.

    Works on UTF-8 bytes: a byte >= 0xC0 starts a non-ASCII character and counts as a letter;
    control bytes (other than tab and newlines), DEL and U+FFFD count as control characters.
    """
    encoded = [t.encode("utf-8", "replace") for t in texts]
    n = len(encoded)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    starts = np.cumsum(lengths) - lengths
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def per_text(per_byte: np.ndarray) -> np.ndarray:
        if buf.size == 0:
            return np.zeros(n, dtype=np.int64)
        sums = np.add.reduceat(per_byte, np.minimum(starts, buf.size - 1), dtype=np.int64)
        return np.where(lengths > 0, sums, 0)  # reduceat gives one byte for an empty text

    letters, visible = per_text(_LETTER[buf]), per_text(_VISIBLE[buf])
    # U+FFFD is EF BF BD in UTF-8; a valid encoding never splits it between two texts.
    fffd = np.zeros(buf.size, dtype=bool)
    fffd[: max(buf.size - 2, 0)] = (buf[:-2] == 0xEF) & (buf[1:-1] == 0xBF) & (buf[2:] == 0xBD)
    has_control = (per_text(_CONTROL[buf]) > 0) | (per_text(fffd) > 0)
    share = np.divide(letters, visible, out=np.ones(n), where=visible > 0)
    return share, has_control


def flag_rows(content: pd.Series, min_chars: int, max_chars: int) -> pd.DataFrame:
    """One boolean column per flag (see FLAGS) for each content string.

    Each distinct string is examined once (regenerations repeat many rows verbatim).
    """
    codes, distinct = pd.factorize(content.astype(str).to_numpy(dtype=object))
    flags = _flag_distinct(distinct.tolist(), min_chars, max_chars)
    return flags.iloc[codes].reset_index(drop=True)


def _flag_distinct(texts: list[str], min_chars: int, max_chars: int) -> pd.DataFrame:
    """The flags of each text of a list."""
    content = pd.Series(texts, dtype=object)
    stripped = content.str.strip()
    length = stripped.str.len().to_numpy()
    share, control = _letter_share_and_control(content)
    maybe = _may_match(texts)
    return pd.DataFrame(
        {
            "empty": length == 0,
            "too_short": (length > 0) & (length < min_chars),
            "too_long": content.str.len().to_numpy() > max_chars,
            "refusal": _contains(content, REFUSAL, maybe),
            "error_text": _contains(content, ERROR_TEXT, maybe),
            "control_chars": control,
            "few_letters": (length > 0) & (share < MIN_LETTER_SHARE),
            "json_blob": stripped.str.match(JSON_BLOB).to_numpy(dtype=bool),
        }
    )


def _may_match(texts: list[str]) -> np.ndarray:
    """Texts that may match REFUSAL or ERROR_TEXT: non-ASCII ones (case-insensitive matching
    of non-ASCII letters has special cases) and ASCII ones containing one of _KEYWORDS."""
    n = len(texts)
    ascii_texts = np.fromiter((t.isascii() for t in texts), dtype=bool, count=n)
    maybe = ~ascii_texts
    index = np.flatnonzero(ascii_texts)
    pieces = [texts[i] for i in index.tolist()]
    starts = np.cumsum([0] + [len(t) + 1 for t in pieces[:-1]])
    joined = "\x00".join(pieces).lower()  # ASCII: same length, so positions map back
    for keyword in _KEYWORDS:
        found = []
        at = joined.find(keyword)
        while at >= 0:
            found.append(at)
            at = joined.find(keyword, at + 1)
        if found:
            maybe[index[np.searchsorted(starts, found, side="right") - 1]] = True
    return maybe


def _contains(content: pd.Series, pattern: str, maybe: np.ndarray) -> np.ndarray:
    """content.str.contains(pattern), searched only where `maybe`."""
    out = np.zeros(len(content), dtype=bool)
    if maybe.any():
        out[maybe] = content[maybe].str.contains(pattern, regex=True).to_numpy(dtype=bool)
    return out
