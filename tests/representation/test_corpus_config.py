"""Public text is disjoint from every client data set; the config keys of prototypes."""

from __future__ import annotations

import pytest

from fednet.config import parse_preset
from fednet.errors import ConfigError
from fednet.representation.corpus import (
    available_public_corpora,
    check_disjoint,
    corpus_digest,
    load_public_corpus,
)

BASE = {"clients": [{"id": "x", "dataset": "sms-spam"}]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["20newsgroups", "chatterbot", "mixed"])
def test_public_corpora_hold_no_client_text(name):
    texts = load_public_corpus(name)
    assert len(texts) > 1000
    check_disjoint(texts)  # every registered catalogue data set


def test_a_corpus_holding_client_text_is_refused():
    from fednet.data import load_dataset

    leaked = load_dataset("sms-spam")["text"][5]
    texts = [*load_public_corpus("chatterbot")[:200], leaked.upper() + "!!"]
    with pytest.raises(ValueError, match=r"overlaps client data sets: sms-spam: \d+ shared"):
        check_disjoint(texts, ["sms-spam"])


def test_corpus_names_and_digest():
    assert available_public_corpora() == [
        "20newsgroups",
        "chatterbot",
        "election-tweets",
        "friends",
        "mixed",
    ]
    with pytest.raises(ValueError, match="unknown public corpus 'wiki'; valid: 20newsgroups"):
        load_public_corpus("wiki")
    assert corpus_digest(["a", "b"]) != corpus_digest(["ab"])


def test_prototype_keys_in_the_strategy_config():
    cfg = parse_preset({**BASE, "strategy": {"prototypes": True, "prototype-weight": 0.5}})
    assert (cfg.strategy.prototypes, cfg.strategy.prototype_weight) == (True, 0.5)
    assert parse_preset(BASE).strategy.prototypes is False
    with pytest.raises(ConfigError, match="`strategy.prototype-weight` must be >= 0"):
        parse_preset({**BASE, "strategy": {"prototype-weight": -1.0}})
    with pytest.raises(ConfigError, match="prototype-wieght"):
        parse_preset({**BASE, "strategy": {"prototype-wieght": 1.0}})


def test_a_federation_run_refuses_prototypes_it_cannot_carry_out():
    from fednet.federation.server import build_strategy

    cfg = parse_preset({**BASE, "strategy": {"prototypes": True}})
    with pytest.raises(ConfigError, match="`strategy.prototypes` is not yet carried out"):
        build_strategy(cfg)


def test_mixed_interleaves_news_tweets_and_conversation():
    from fednet.representation.corpus import FRIENDS_MIN_WORDS

    news = load_public_corpus("20newsgroups")
    tweets = load_public_corpus("election-tweets")
    friends = load_public_corpus("friends")
    mixed = load_public_corpus("mixed")
    assert mixed[:3] == [news[0], tweets[0], friends[0]]
    assert mixed[3:6] == [news[1], tweets[1], friends[1]]
    assert set(mixed) == set(news) | set(tweets) | set(friends)
    assert len(tweets) > 6000 and len(friends) > 20000
    assert min(len(t.split()) for t in friends) >= FRIENDS_MIN_WORDS


def test_friends_lines_are_read_as_cp1252_and_tweets_lose_their_links():
    import re

    friends = load_public_corpus("friends")
    assert not [t for t in friends if re.search("[\x80-\x9f]", t)]
    assert any("\u2014" in t for t in friends)  # cp1252 0x97, the em dash, read as one
    tweets = load_public_corpus("election-tweets")
    assert not [t for t in tweets if "http" in t]
