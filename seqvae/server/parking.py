"""Slots of clients that a full client table made room from: kept, bounded, until their owner claims them.

A client holding melodies is the last one a full table lets go, and even then its slots are not
dropped: the whole client is parked here. The same UDP address and port coming back gets it back
as it was (slots, interpolations, reply port); any client from the same host can claim the slots
with /seqvae/restore. The parking is bounded in slots, oldest dropped first, with a log line.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from seqvae.server.params import RequestError

log = logging.getLogger("seqvae.server")

LOG_EVERY_S = 10.0  # slots dropped over the limit are logged at most this often


class ParkedSlots:
    """Evicted clients by key, oldest parked first; at most `limit` slots across all of them.

    A client here is a `clients.Client` (key, host, slots, interpolations); this module does not import it
    because the registry there parks into this one."""

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self.clients: OrderedDict[Hashable, Any] = OrderedDict()
        self.count = 0  # slots held here
        self.dropped = 0  # slots dropped over the limit, ever
        self._unlogged = 0
        self._logged_at = -LOG_EVERY_S

    def __len__(self) -> int:
        return self.count

    def park(self, client: Any) -> None:
        self.clients[client.key] = client
        self.count += len(client.slots)
        if self.count > self.limit:
            self._trim()

    def claim(self, key: Hashable) -> Any:
        """The parked client with this key (its address came back), taken out of the parking."""
        client = self.clients.pop(key, None)
        if client is not None:
            self.count -= len(client.slots)
        return client

    def find(self, host: str, slot: str | None = None) -> tuple[Any, list[str]]:
        """The most recently parked client of `host` (holding `slot`, if named) and the slot names to restore."""
        mine = [client for client in reversed(self.clients.values()) if client.host == host]
        if not mine:
            raise RequestError(
                f"nothing is parked for {host}: slots are parked only when a full server makes room from a client "
                "that holds melodies; fill slots again with /seqvae/sample or /seqvae/encode")
        if slot is None:
            return mine[0], list(mine[0].slots)
        for client in mine:
            if slot in client.slots:
                return client, [slot]
        parked = ", ".join(dict.fromkeys(name for client in mine for name in client.slots).keys()) or "none"
        raise RequestError(f"slot {slot!r} is not parked for {host} (parked: {parked[:300]}): "
                           "send /seqvae/restore without a slot to take them all")

    def take(self, client: Any, names: list[str]) -> tuple[list[tuple[str, Any]], dict[str, list[str]]]:
        """Pop `names` from a parked client: the (name, Slot) pairs and the interpolations they complete."""
        slots = [(name, client.slots.pop(name)) for name in names]
        self.count -= len(slots)
        taken = set(names)
        paths = {prefix: members for prefix, members in client.interpolations.items() if set(members) <= taken}
        for prefix in paths:
            del client.interpolations[prefix]
        if not client.slots:
            self.clients.pop(client.key, None)
        return slots, paths

    def _trim(self) -> None:
        owners = []
        while self.count > self.limit and self.clients:
            key, oldest = next(iter(self.clients.items()))
            name, _ = oldest.slots.popitem(last=False)
            self.count -= 1
            self.dropped += 1
            self._unlogged += 1
            owners.append(key)
            for prefix in [p for p, members in oldest.interpolations.items() if name in members]:
                del oldest.interpolations[prefix]
            if not oldest.slots:
                del self.clients[key]
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:  # a flood of one-shot senders parks a lot: a line per 10 s
            log.warning("parked slots passed their limit of %d: dropped the %d oldest (the last of %s)", self.limit,
                        self._unlogged, owners[-1] if owners else "?")
            self._logged_at, self._unlogged = now, 0
