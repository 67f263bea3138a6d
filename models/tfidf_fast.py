"""Batch scoring for tiny-tfidf: all n-grams of a micro-batch at once, in numpy.

Scoring one n-gram at a time (slice a string, look it up in a dict, count it) costs about
100 ns per n-gram in the interpreter, and a 1.3 KB text has about 6,000 of them. Here a
micro-batch goes through a fixed number of numpy passes instead, with the scores of
:mod:`deepfake_stream.models.detectors.tfidf`'s reference analyzers
(tests/unit/test_tfidf_fast.py and test_tfidf_batch.py keep them as the oracle):

1. Each text is NFC-normalised, lowercased and split on whitespace: ``str.split()`` splits
   on exactly the characters of ``re``'s ``\\s``, and U+FEFF is added by hand, so these are
   the words of ``prepare(text).split(" ")``. They are joined as ``" w1  w2 "`` and the
   texts of the batch concatenated into one array of code points (UTF-32, where every code
   point is one element), each position knowing its text (row).
2. ``char_wb``: code points become symbol ids, and every window of n ids is a candidate
   n-gram. A window that crosses a word or a text contains two spaces, which no padded word
   does, so it matches nothing; a padded word no longer than n is its own single window,
   which is scikit-learn's short-word rule as long as ``lo <= 3`` (the shortest padded
   word, ``" x "``).
3. ``word``: the tokens of ``\\w\\w+`` are the runs of two or more ``\\w`` code points (a
   table of every code point, built with ``re`` itself); they are cut out with one
   ``str.split``, numbered with one dict lookup each, and windows of n tokens of one text
   are the candidate n-grams.
4. Windows become feature indices by walking the vocabulary as a trie, one level per n for
   all windows at once (:class:`_Trie`), and ``np.bincount`` over ``row * width + feature``
   counts each text's n-grams. Misses go to one extra feature whose weight is 0.

:func:`scorer_for` returns None for blocks outside these limits; they keep the reference path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import repeat

import numpy as np

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # multiplicative hashing spreads structured codes
_DENSE_MAX = 1 << 22  # entries of a trie level kept as a plain table
_CHUNK_ROWS = 64  # texts per numpy pass: bounds the counts array (rows x features)
_CHUNK_CHARS = 1 << 17  # and the windows of one pass (a 100,000-character text is its own)


@dataclass(frozen=True)
class Batch:
    """A chunk of texts: one code-point array (``" w1  w2 "`` per text), each position's row."""

    size: int
    codes: np.ndarray
    rows: np.ndarray


def _code_points(s: str) -> np.ndarray:
    # surrogatepass: a lone surrogate (JSON allows "\ud800") is one code point, as in str.
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), np.uint32)


def _batch(padded: list[str]) -> Batch:
    lengths = np.fromiter(map(len, padded), np.intp, count=len(padded))
    rows = np.repeat(np.arange(len(padded)), lengths)
    return Batch(size=len(padded), codes=_code_points("".join(padded)), rows=rows)


def batches(texts: Sequence[str]) -> Iterator[tuple[int, Batch]]:
    """``(first text's index, Batch)`` for consecutive chunks of ``texts``."""
    start, padded, chars = 0, [], 0
    for i, text in enumerate(texts):
        words = unicodedata.normalize("NFC", text).lower().replace("\ufeff", " ").split()
        padded.append(f" {'  '.join(words)} " if words else "")
        chars += len(padded[-1])
        if len(padded) == _CHUNK_ROWS or chars >= _CHUNK_CHARS:
            yield start, _batch(padded)
            start, padded, chars = i + 1, [], 0
    if padded:
        yield start, _batch(padded)


@cache
def _word_chars() -> np.ndarray:
    """Whether ``re`` counts each code point as ``\\w`` (built once, ~0.3 s)."""
    every = "".join(map(chr, range(0x110000)))
    return _code_points(re.sub(r"\W", "\0", every)) != 0  # "\0" is itself \W


class CodeTable:
    """An exact map from int64 keys to their positions in ``keys``: linear probing, vectorised."""

    def __init__(self, keys: Sequence[int]) -> None:
        bits = max(4, (4 * len(keys)).bit_length())  # load factor <= 1/4: ~1.2 probes
        self.mask, self.shift, self.missing = (1 << bits) - 1, np.uint64(64 - bits), len(keys)
        table, values = [-1] * (1 << bits), [len(keys)] * (1 << bits)
        slots = self._slots(np.array(keys, np.int64)).tolist()
        for value, (key, slot) in enumerate(zip(keys, slots, strict=True)):
            while table[slot] != -1:
                slot = (slot + 1) & self.mask
            table[slot], values[slot] = key, value
        self.keys, self.values = np.array(table, np.int64), np.array(values, np.intp)

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.view(np.uint64) * _FIBONACCI) >> self.shift).astype(np.intp)

    def __getitem__(self, keys: np.ndarray) -> np.ndarray:
        """The position of each key in the table's ``keys``; their count for an unknown one."""
        slots = self._slots(keys)
        found = self.keys[slots]
        out = np.where(found == keys, self.values[slots], self.missing)
        todo = np.flatnonzero((found != keys) & (found != -1))  # collided: probe on
        slots, keys = slots[todo], keys[todo]
        while todo.size:
            slots = (slots + 1) & self.mask
            found = self.keys[slots]
            hit = found == keys
            out[todo[hit]] = self.values[slots[hit]]
            more = ~hit & (found != -1)
            todo, slots, keys = todo[more], slots[more], keys[more]
        return out


class _Level:
    """One trie level: ``state * base + id`` -> (feature index, state of the n symbols)."""

    def __init__(
        self, size: int, keys: list[int], features: list[int], states: list[int], missing: int
    ) -> None:
        if size <= _DENSE_MAX:  # a table indexed by the key itself: one gather per window
            self.index: CodeTable | None = None
            self.features = np.full(size, missing, np.intp)
            self.states = np.zeros(size, np.intp)
            self.features[keys], self.states[keys] = features, states
        else:  # few keys in a large space (pairs of words): hashed; the extra entry: unknown
            self.index = CodeTable(keys)
            self.features = np.array([*features, missing], np.intp)
            self.states = np.array([*states, 0], np.intp)

    def at(self, keys: np.ndarray) -> np.ndarray:
        return keys if self.index is None else self.index[keys]


class _Trie:
    """A block's terms (tuples of symbol ids) as a trie, walked one level per n for a batch.

    Symbol ids run from 1 to ``base - 1``; 0 stands for every symbol no term uses. Level n
    maps ``state * base + id``, where state numbers the n-1 symbols before (0 at level 1), to
    the feature index of the n symbols (``missing`` when they are no term) and to their own
    state (0 when no longer term starts with them, which makes every longer window a miss).
    So each n costs a couple of array gathers per window, with no string and no hashing of
    whole n-grams, and windows of any n stay exact.
    """

    def __init__(self, terms: Sequence[tuple[int, ...] | None], base: int) -> None:
        self.base, self.missing = base, len(terms)
        entries = {t: feature for feature, t in enumerate(terms) if t}  # repeated: last wins
        prefixes = {t[:n] for t in entries for n in range(1, len(t))}
        states: dict[tuple[int, ...], int] = {(): 0}
        self.levels, before = [], 1  # states of the level before, 0 included
        for n in range(1, max(map(len, entries), default=0) + 1):
            grams = sorted({g for g in (*entries, *prefixes) if len(g) == n})
            keys = [states[g[:-1]] * base + g[-1] for g in grams]
            own = [g for g in grams if g in prefixes]
            states.update((g, i) for i, g in enumerate(own, 1))
            features = [entries.get(g, self.missing) for g in grams]
            level_states = [states.get(g, 0) for g in grams]
            self.levels.append(_Level(before * base, keys, features, level_states, self.missing))
            before = len(own) + 1

    def walk(
        self, ids: np.ndarray, lo: int, hi: int, cut: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """Feature indices of the windows of n ids at 0, 1, ..., for n = lo..hi.

        ``cut[i]``: ids i and i + 1 belong to different texts, so no window spans both.
        """
        key = ids
        for n, level in enumerate(self.levels[:hi], 1):
            at = level.at(key)
            if n >= lo:
                yield level.features[at]
            if n < hi:
                state = level.states[at[:-1]]
                if cut is not None:
                    state[cut[n - 1 :]] = 0
                key = state * self.base + ids[n:]
        for n in range(max(len(self.levels) + 1, lo), hi + 1):  # longer than every term
            yield np.full(max(len(ids) - n + 1, 0), self.missing, np.intp)


class _CharWb:
    """``char_wb`` symbols: each code point's id (0 for characters no term uses)."""

    def __init__(self, vocabulary: Sequence[str], lo: int, hi: int) -> None:
        alphabet = sorted({c for term in vocabulary for c in term})
        # Indexed by code point; the last entry (0) stands for every code point beyond it.
        self.ids = np.zeros(max(map(ord, alphabet), default=0) + 2, np.intp)
        self.ids[[ord(c) for c in alphabet]] = np.arange(1, len(alphabet) + 1)
        self.usable = 1 <= lo <= min(hi, 3)
        self.trie = _Trie(
            [
                # A term with two spaces never comes out of a padded word (but would out of
                # a window), nor does a term of another length.
                tuple(int(self.ids[ord(c)]) for c in t)
                if lo <= len(t) <= hi and "  " not in t
                else None
                for t in vocabulary
            ],
            base=len(alphabet) + 1,
        )

    def symbols(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return self.ids[np.minimum(batch.codes, len(self.ids) - 1)], batch.rows, None


class _Word:
    """``word`` symbols: the tokens of ``\\w\\w+``, numbered by the vocabulary."""

    def __init__(self, vocabulary: Sequence[str], lo: int, hi: int) -> None:
        terms = [t.split(" ") for t in vocabulary]
        tokens = sorted({tok for term in terms for tok in term})
        self.ids = {tok: i for i, tok in enumerate(tokens, 1)}
        self.usable = 1 <= lo <= hi
        self.word_chars = _word_chars()  # at load, not in the first batch
        self.trie = _Trie(
            [tuple(map(self.ids.__getitem__, t)) if lo <= len(t) <= hi else None for t in terms],
            base=len(tokens) + 1,
        )

    def symbols(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        word = np.zeros(len(batch.codes) + 2, bool)
        word[1:-1] = self.word_chars[batch.codes]
        kept = np.zeros_like(word)  # \w\w+ matches the maximal runs of two or more \w
        kept[1:-1] = word[1:-1] & (word[:-2] | word[2:])
        starts = np.flatnonzero(kept[1:-1] & ~kept[:-2])
        text = np.where(kept[1:-1], batch.codes, 32).astype("<u4").tobytes().decode("utf-32-le")
        tokens = text.split()  # one per start, in order
        ids = np.fromiter(map(self.ids.get, tokens, repeat(0)), np.intp, len(tokens))
        rows = batch.rows[starts]
        return ids, rows, rows[:-1] != rows[1:]


class BlockScorer:
    """One block's ``sum(weight * coef) / ||weight||`` for every text of a batch."""

    def __init__(
        self,
        encoder: _CharWb | _Word,
        ngram_range: tuple[int, int],
        idf: np.ndarray,
        coef: np.ndarray,
    ) -> None:
        self.encoder, self.n, (self.lo, self.hi) = encoder, len(idf), ngram_range
        self.idf, self.coef = np.append(idf, 0.0), np.append(coef, 0.0)  # a miss weighs 0

    def decisions(self, batch: Batch) -> np.ndarray:
        ids, rows, cut = self.encoder.symbols(batch)
        width = self.n + 1  # features, then one column for misses
        base = rows * width
        keys = np.concatenate(
            [base[: len(f)] + f for f in self.encoder.trie.walk(ids, self.lo, self.hi, cut)]
        )
        counts = np.bincount(keys, minlength=batch.size * width)
        pairs = np.flatnonzero(counts != 0)  # via bool: several times faster on int64
        r, f = np.divmod(pairs, width)
        weights = (np.log(counts[pairs]) + 1.0) * self.idf[f]
        dot = np.bincount(r, weights * self.coef[f], minlength=batch.size)
        norm = np.sqrt(np.bincount(r, weights * weights, minlength=batch.size))
        # An all-zero row stays zero under L2 normalisation.
        return np.divide(dot, norm, out=np.zeros(batch.size), where=norm > 0)


def scorer_for(
    analyzer: str,
    ngram_range: Sequence[int],
    vocabulary: Sequence[str],
    idf: np.ndarray,
    coef: np.ndarray,
) -> BlockScorer | None:
    """The batch scorer of one block, or None where only the reference analyzer is exact."""
    kinds = {"char_wb": _CharWb, "word": _Word}
    lo, hi = int(ngram_range[0]), int(ngram_range[1])
    if analyzer not in kinds:
        return None
    encoder = kinds[analyzer](vocabulary, lo, hi)
    return BlockScorer(encoder, (lo, hi), idf, coef) if encoder.usable else None
