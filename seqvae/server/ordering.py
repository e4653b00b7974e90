"""Each client's replies in the order its requests arrived, whatever order the work finished in.

A request runs on the loop at once unless it reads slots that earlier, unfinished work will fill:
then it waits, and so does everything the client sent after it. Work for the model goes to the
inference worker (see worker.py); its result comes back to the loop, lands in the client's slots
and is replied in turn. A bundle with a future timetag first waits on the loop's clock.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from seqvae.server import protocol
from seqvae.server.clients import Client
from seqvae.server.osc import IncomingMessage, encode_message
from seqvae.server.params import RequestError, bind
from seqvae.server.transport import OscTransport
from seqvae.server.worker import CallJob, DecodeJob, InferenceWorker

log = logging.getLogger("seqvae.server")

MAX_SCHEDULE_AHEAD_S = 60.0
MAX_SCHEDULED_PER_CLIENT = 256
MAX_PENDING_PER_CLIENT = 256
SEND_SLICE = 4  # replies sent per turn of the loop (8 let a knob wait 6.7 ms at p99 behind interpolate 64, 4: 3.0)


class Ticket:
    """A request's place in its client's order: replies go out, and results land in slots, in this order."""

    __slots__ = ("address", "messages", "done", "work", "result", "writes", "on_reply", "sending")

    def __init__(self, address: str = "?", on_reply: Callable[[list[protocol.Message]], None] | None = None) -> None:
        self.address = address
        self.on_reply = on_reply  # replies go here instead of to the client (a knob's request)
        self.messages: list[protocol.Message] = []
        self.done = False
        self.work: protocol.DecodeWork | protocol.CallWork | protocol.Ready | None = None
        self.result: Any = None
        self.writes: tuple[str, ...] = ()
        self.sending: Iterator[protocol.Message] | None = None  # replies still to send, once it started


class ClientQueue:
    """One client's requests in flight: replies owed, requests waiting on earlier results, bundles waiting."""

    __slots__ = ("tickets", "blocked", "pending_writes", "flushing", "scheduled")

    def __init__(self) -> None:
        self.tickets: deque[Ticket] = deque()
        self.blocked: deque[tuple[Ticket, str, tuple]] = deque()  # waiting on earlier results
        self.pending_writes: Counter[str] = Counter()  # slots that queued work will fill
        self.flushing = False
        self.scheduled = 0

    @property
    def idle(self) -> bool:
        return not self.tickets and not self.scheduled and not self.blocked


def check_time(run_at: float | None, limit_s: float) -> float:
    """Seconds until a bundle's timetag (0 for now or past), refusing tags absurdly far ahead."""
    if run_at is None:
        return 0.0
    delay = run_at - time.time()
    if delay > limit_s:
        raise RequestError(f"bundle timetag is {delay:.0f} s ahead; the server schedules at most {limit_s:g} s ahead")
    return max(delay, 0.0)


class RequestOrder:
    """Runs each client's requests through the address table and the worker, and replies in arrival order.

    `queues` holds exactly the clients with something in flight: a queue is made by a client's first
    pending request and dropped once it has nothing left to answer.
    """

    def __init__(self, transport: OscTransport, worker: InferenceWorker,
                 session_for: Callable[[Client], protocol.Session]) -> None:
        self.transport = transport
        self.stats = transport.stats
        self.worker = worker
        self.session_for = session_for
        self.queues: dict[Client, ClientQueue] = {}

    def in_use(self) -> set[Hashable]:
        """Keys of the clients with requests in flight."""
        return {client.key for client in self.queues}

    def take(self, client: Client, messages: list[IncomingMessage]) -> None:
        """A packet's messages: each runs now, or at its bundle's timetag."""
        for msg in messages:
            self.stats.messages += 1
            try:
                delay = check_time(msg.run_at, MAX_SCHEDULE_AHEAD_S)
                if delay > 0.0005:
                    queue = self._queue(client)
                    if queue.scheduled >= MAX_SCHEDULED_PER_CLIENT:
                        self._refuse_now(client, msg.address, f"busy: {queue.scheduled} bundled messages wait "
                                                              "for their time already; send fewer future bundles")
                        continue
                    queue.scheduled += 1
                    assert self.transport.loop is not None
                    self.transport.loop.call_later(delay, self._run_scheduled, client, msg.address, msg.args)
                    continue
            except RequestError as exc:
                self.respond(client, [protocol.error_message(msg.address, str(exc))])
                continue
            self.dispatch(client, msg.address, msg.args)

    def dispatch(self, client: Client, address: str, args: tuple,
                 on_reply: Callable[[list[protocol.Message]], None] | None = None) -> None:
        """Take a request in arrival order; it runs now unless it reads slots that earlier work will fill.

        With `on_reply`, the replies go to it, in their turn, instead of to the client."""
        queue = self._queue(client)
        if len(queue.tickets) >= MAX_PENDING_PER_CLIENT:
            text = f"busy: {len(queue.tickets)} of your requests are waiting; wait for replies"
            if on_reply is not None:
                on_reply([protocol.error_message(address, text)])
            else:
                self._refuse_now(client, address, text)
            return
        ticket = Ticket(address, on_reply)
        queue.tickets.append(ticket)
        if queue.blocked or not self._start(client, ticket, address, args):
            queue.blocked.append((ticket, address, args))

    def respond(self, client: Client, messages: list[protocol.Message]) -> None:
        """Replies that need no work, kept in order behind the client's earlier requests."""
        ticket = Ticket()
        self._queue(client).tickets.append(ticket)
        self._finish(client, ticket, messages)

    def _queue(self, client: Client) -> ClientQueue:
        queue = self.queues.get(client)
        if queue is None:
            queue = self.queues[client] = ClientQueue()
        return queue

    def _refuse_now(self, client: Client, address: str, text: str) -> None:
        """A 'busy' answer sent at once, ahead of the replies the client waits for: queueing it behind
        them would let a flood grow the queue it is refused for."""
        self.stats.busy += 1
        self.stats.errors += 1
        self._send(client, encode_message(protocol.ERROR, [address, text]))

    def _run_scheduled(self, client: Client, address: str, args: tuple) -> None:
        self._queue(client).scheduled -= 1
        self.dispatch(client, address, args)

    def _start(self, client: Client, ticket: Ticket, address: str, args: tuple) -> bool:
        """Run a request's handler; False (nothing done) when it must wait for pending slot writes."""
        try:
            route = protocol.ROUTES.get(address)
            if route is None:
                raise RequestError(protocol.unknown_address(address))
            if route.variadic:
                fixed = len(route.params)
                values = bind(address, route.params, tuple(args[:fixed]))
                values.append(tuple(args[fixed:]))
            else:
                values = bind(address, route.params, tuple(args))
            pending = self.queues[client].pending_writes
            if pending and self._waits(route, values, pending):
                return False
            session = replace(self.session_for(client), background=lambda work: self._background(client, work))
            if route.plays:
                protocol.check_progression(session)
            reply = route.handler(session, *values)
        except ValueError as exc:  # RequestError, or an engine check with its own message
            self._finish(client, ticket, [protocol.error_message(address, str(exc))])
            return True
        except Exception as exc:
            log.exception("handler for %s failed", address)
            self._finish(client, ticket, [protocol.error_message(address, f"internal error: {exc}")])
            return True
        if isinstance(reply, list):
            self._finish(client, ticket, reply)
        elif isinstance(reply, protocol.Ready):
            ticket.writes = tuple(reply.writes)
            self.queues[client].pending_writes.update(ticket.writes)
            ticket.work, ticket.result, ticket.done = reply, reply.result, True
            self._flush(client)
        else:
            self._submit(client, ticket, address, reply, session.engine)
        return True

    @staticmethod
    def _waits(route: protocol.Route, values: list, pending: Counter[str]) -> bool:
        if route.barrier:
            return True
        return any(values[i] in pending for i, param in enumerate(route.params) if param.name in route.reads)

    def _submit(self, client: Client, ticket: Ticket, address: str, work: protocol.DecodeWork | protocol.CallWork,
                engine: Any) -> None:
        """Queue the work; a decode runs on `engine`, the request's (a client's personal or constrained view)."""
        loop = self.transport.loop
        assert loop is not None

        def done(result: Any) -> None:
            try:
                loop.call_soon_threadsafe(self._complete, client, ticket, address, work, result)
            except RuntimeError:  # shutting down
                pass

        if isinstance(work, protocol.DecodeWork):
            job: DecodeJob | CallJob = DecodeJob(work.z, work.temperature, work.seed, done, owner=client.key,
                                                 engine=engine, chords=work.chords)
        else:
            job = CallJob(work.fn, done, owner=client.key, heavy=work.heavy)
        refused = self.worker.submit(job)
        if refused is not None:
            self.stats.busy += 1
            self._finish(client, ticket, [protocol.error_message(address, f"busy: {refused}")])
            return
        ticket.writes = tuple(work.writes)
        self.queues[client].pending_writes.update(ticket.writes)

    def _background(self, client: Client, work: protocol.CallWork) -> bool:
        """Queue work that answers nobody (its `finish` runs on the loop, its messages are dropped); False when the
        lanes are full, so a client's own requests keep their room."""
        loop = self.transport.loop
        assert loop is not None

        def done(result: Any) -> None:
            try:
                loop.call_soon_threadsafe(work.finish, result)
            except RuntimeError:  # shutting down
                pass

        return self.worker.submit(CallJob(work.fn, done, owner=client.key, heavy=work.heavy)) is None

    def _complete(self, client: Client, ticket: Ticket, address: str,
                  work: protocol.DecodeWork | protocol.CallWork, result: Any) -> None:
        if isinstance(result, ValueError):
            ticket.messages = [protocol.error_message(address, str(result))]
        elif isinstance(result, Exception):
            log.error("%s failed: %r", address, result)
            ticket.messages = [protocol.error_message(address, f"internal error: {type(result).__name__}: {result}")]
        else:
            ticket.work, ticket.result = work, result
        ticket.done = True
        self._flush(client)

    def _finish(self, client: Client, ticket: Ticket, messages: list[protocol.Message]) -> None:
        ticket.messages = messages
        ticket.done = True
        self._flush(client)

    def _flush(self, client: Client) -> None:
        """Send finished replies in order (storing results in slots as they go), then start waiting requests."""
        queue = self.queues[client]
        if queue.flushing:  # re-entered from a request started below: the loop here picks it up
            return
        queue.flushing = True
        try:
            progress = True
            while progress:
                progress = False
                tickets = queue.tickets
                while tickets and tickets[0].done:
                    if not self._deliver(client, queue, tickets[0]):
                        break  # a long reply gives the loop back between slices; the rest follows
                    tickets.popleft()
                    progress = True
                while queue.blocked:
                    ticket, address, args = queue.blocked[0]
                    if not self._start(client, ticket, address, args):
                        break
                    queue.blocked.popleft()
                    progress = True
        finally:
            queue.flushing = False
        if queue.idle:
            del self.queues[client]

    def _deliver(self, client: Client, queue: ClientQueue, ticket: Ticket) -> bool:
        """Send a finished ticket's replies; False when SEND_SLICE went out and more follow from the loop's next
        turn (a 64-step interpolation is 64 slots and messages: other clients' requests run in between)."""
        if ticket.sending is None:
            messages: Iterable[protocol.Message] = ticket.messages
            if ticket.work is not None:
                try:
                    messages = ticket.work.finish(ticket.result)
                except ValueError as exc:
                    messages = [protocol.error_message(ticket.address, str(exc))]
                except Exception as exc:
                    log.exception("finishing %s failed", ticket.address)
                    messages = [protocol.error_message(ticket.address, f"internal error: {exc}")]
            if ticket.on_reply is not None:
                replies = list(self._replies(ticket, iter(messages)))
                self._release_writes(queue, ticket)
                ticket.on_reply(replies)
                return True
            ticket.sending = self._replies(ticket, iter(messages))
        for _ in range(SEND_SLICE):
            reply = next(ticket.sending, None)
            if reply is None:
                self._release_writes(queue, ticket)
                return True
            self._send_reply(client, ticket, *reply)
        self.stats.reply_pauses += 1
        loop = self.transport.loop
        if loop is not None:
            loop.call_soon(self._resume, client)
        return False

    def _resume(self, client: Client) -> None:
        if client in self.queues:
            self._flush(client)

    @staticmethod
    def _replies(ticket: Ticket, messages: Iterator[protocol.Message]) -> Iterator[protocol.Message]:
        """The messages, a finish step that fails part way (it may yield as it stores) ending in its error."""
        try:
            yield from messages
        except ValueError as exc:
            yield protocol.error_message(ticket.address, str(exc))
        except Exception as exc:
            log.exception("finishing %s failed", ticket.address)
            yield protocol.error_message(ticket.address, f"internal error: {exc}")

    @staticmethod
    def _release_writes(queue: ClientQueue, ticket: Ticket) -> None:
        if ticket.writes:
            queue.pending_writes.subtract(ticket.writes)
            for name in ticket.writes:
                if queue.pending_writes[name] <= 0:
                    del queue.pending_writes[name]

    def _send_reply(self, client: Client, ticket: Ticket, address: str, args: list) -> None:
        if address == protocol.ERROR:
            self.stats.errors += 1
        try:
            packet = encode_message(address, args)
        except (TypeError, OverflowError) as exc:
            log.error("reply %s %r could not be encoded: %s", address, args[:8], exc)
            packet = encode_message(protocol.ERROR, [ticket.address, f"internal error: reply not sendable ({exc})"])
        self._send(client, packet)

    def _send(self, client: Client, packet: bytes) -> None:
        if client.reply_addr is not None:
            self.transport.send_udp(packet, client.reply_addr)
        elif client.tcp is not None:
            client.tcp.send(packet)
