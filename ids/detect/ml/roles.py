"""What the ML does with a (client, server, protocol) pair its model never saw.

A new pair is the baseline's finding (new talker, new connection), not a stream of ML alerts. The ML scores
it against the **nearest profile of the same role**, or abstains:

1. a known pair with the same server and protocol (another client of the same PLC, OPC UA server or broker:
   an HMI added beside the existing ones), the one with the broadest training profile (most keys, then most
   operations, then the lowest pair key for a fixed choice): the broadest profile counts the fewest of the
   newcomer's keys as never seen, so only behaviour outside everything that server's clients did counts;
2. else a known pair with the same client and protocol (a known HMI polling a new PLC), chosen the same way;
3. else none: the ML abstains for that pair (it knows neither end in that protocol) and says so once.

The new pair's windows then carry `new_pair` 0 (the newness itself is the baseline's), its never-seen counts
and written-value ranges come from the stand-in's profile, and its scales and threshold are the stand-in's.
A pair scored by a stand-in raises at most one ML alert in its lifetime (docs/ML.md "New pairs").
"""
from __future__ import annotations

from ...flow.budget import trim_oldest


def _breadth(key, prof) -> tuple:
    return (-len(prof.keys), -len(prof.ops), key)


def nearest(profiles: dict, key: tuple) -> tuple | None:
    """The stand-in pair for an unknown `key` (client, server, protocol), or None to abstain."""
    client, server, proto = key
    same_server = [k for k in profiles if k[1] == server and k[2] == proto]
    if same_server:
        return min(same_server, key=lambda k: _breadth(k, profiles[k]))
    same_client = [k for k in profiles if k[0] == client and k[2] == proto]
    if same_client:
        return min(same_client, key=lambda k: _breadth(k, profiles[k]))
    return None


class StandIns:
    """Memoised stand-in choices of one model (bounded: a choice is a pure function of the key)."""

    def __init__(self, profiles: dict, limit: int = 100_000):
        self.profiles = profiles
        self.choice: dict[tuple, tuple | None] = {}
        self.limit = limit

    def __call__(self, key: tuple) -> tuple | None:
        if key in self.profiles:
            return key
        try:
            return self.choice[key]
        except KeyError:
            pass
        c = nearest(self.profiles, key)
        if len(self.choice) >= self.limit:  # the oldest eighth at once: one key per new key is quadratic
            trim_oldest(self.choice, self.limit)
        self.choice[key] = c
        return c
