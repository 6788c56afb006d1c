"""One fake Live connection: admission, turn detection, replies, barge-in and faults.

Concurrency: the connection handler reads client frames (recording them and running
turn detection) while one responder task plays replies one at a time from a queue. A
barge-in cancels the reply being played. Nothing here is shared between connections
except `SharedState` (conversations by resumption handle, faults already fired).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from app.dev.fakes.live import wire
from app.dev.fakes.live.clips import load_clip
from app.dev.fakes.live.continuous import stream_forever
from app.dev.fakes.live.records import (
    AudioFrame,
    Conversation,
    SessionRecord,
    ToolCheck,
    TranscriptLine,
)
from app.dev.fakes.live.scenario import Reply, Scenario, ToolCallSpec
from app.dev.fakes.live.shared import SharedState, contains, fragments, raise_unexpected
from app.dev.fakes.live.vad import EnergyVad, VadEvent

# Refusal texts as Google sends them (seen in public logs of google-genai users).
BAD_KEY = (1007, "API key not valid. Please pass a valid API key.")
NO_KEY = (
    1008,
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API.",
)
BAD_HANDLE = (1008, "Session resumption handle is invalid or has expired.")
TOKENS_PER_SECOND = 25  # native-audio models count ~25 tokens per second of audio


@dataclass
class _PendingCall:
    spec: ToolCallSpec
    future: asyncio.Future[dict[str, Any]]


Trigger = Literal["greeting", "turn"]


class LiveSession:
    def __init__(
        self,
        ws: ServerConnection,
        scenario: Scenario,
        record: SessionRecord,
        shared: SharedState,
        expected_key_ok: bool,
    ) -> None:
        self._ws = ws
        self._sc = scenario
        self._rec = record
        self._shared = shared
        self._key_ok = expected_key_ok
        self._conv = Conversation(id="")
        self._vad = EnergyVad(
            scenario.vad.rms_threshold, scenario.vad.min_speech_ms, scenario.vad.silence_ms
        )
        self._queue: asyncio.Queue[Trigger] = asyncio.Queue()
        self._current: asyncio.Task[None] | None = None
        self._pending: dict[str, _PendingCall] = {}
        self._window_open = False  # a reply is being played
        self._playback_until = 0.0  # ...or the caller is still hearing it (monotonic)
        self._resumable = False
        self._automatic_vad = True
        self._barge_in = scenario.barge_in.enabled and not scenario.instant
        self._caller_samples = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._current_text = ""
        self._streaming = False  # continuous mode: the endless reply has begun

    # --- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self._admit():
                await self._serve()
            # Every close the fake makes on purpose is already recorded; any other close
            # we sent first comes from FakeLiveServer.stop() (1001 going away).
            client_first = self._ws.protocol.close_rcvd_then_sent is not False
            ended = "client_closed" if client_first else "server_stopped"
            self._rec.finish(ended, self._ws.close_code, self._ws.close_reason)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            reason = exc.rcvd.reason if exc.rcvd else None
            self._rec.finish("client_closed" if exc.rcvd else "dropped", code, reason)
        except wire.WireError as exc:
            await self._close("protocol_error", 1007, str(exc))
        finally:
            for task in [self._current, *self._tasks]:
                if task is not None:
                    task.cancel()
            self._rec.finish("server_stopped", self._ws.close_code, self._ws.close_reason)

    async def _admit(self) -> bool:
        """Read setup; refuse (close before setupComplete) or accept it."""
        first = wire.parse_client_message(await self._ws.recv())
        if not isinstance(first, wire.Setup):
            raise wire.WireError("The first message must be setup.")
        rec = self._rec
        rec.setup, rec.model = first.raw, first.model
        rec.resumption_handle = first.resumption_handle
        refusal = self._refusal(first)
        if refusal is not None:
            await self._close("refused", *refusal)
            return False
        conv = self._conversation(first)
        if conv is None:
            chosen = self._sc.resume_refusal
            await self._close("refused", *((chosen.code, chosen.reason) if chosen else BAD_HANDLE))
            return False
        self._conv = conv
        rec.conversation_id = conv.id
        self._resumable = first.resumption is not None
        self._automatic_vad = first.automatic_vad
        self._barge_in = self._barge_in and first.barge_in_allowed
        rec.session_id = f"fake-{uuid.uuid4().hex}"
        await self._send(wire.setup_complete(rec.session_id))
        rec.log("setup_complete")
        return True

    def _refusal(self, setup: wire.Setup) -> tuple[int, str] | None:
        if not self._key_ok:
            return BAD_KEY if self._rec.api_key_present else NO_KEY
        if not self._sc.model_allowed(setup.model):
            name = setup.model.removeprefix("models/")
            return 1008, (
                f"models/{name} is not found for API version "
                f"{self._rec.api_version or 'v1beta'}, or is not supported for "
                "bidiGenerateContent"
            )
        after = self._sc.refuse_setup_after
        if self._sc.refuse_setup is not None and (after is None or self._rec.index >= after):
            return self._sc.refuse_setup.code, self._sc.refuse_setup.reason
        return None

    def _conversation(self, setup: wire.Setup) -> Conversation | None:
        handle = setup.resumption_handle
        if handle is None:
            return self._shared.new_conversation()
        if self._sc.resume_refused:
            return None
        conv = self._shared.resume(handle)
        self._rec.resumed = conv is not None
        return conv

    async def _serve(self) -> None:
        responder = asyncio.create_task(self._respond_loop())
        self._tasks.add(responder)
        async for frame in self._ws:
            await self._on_message(wire.parse_client_message(frame))

    # --- client frames --------------------------------------------------------------

    async def _on_message(self, msg: wire.ClientMessage) -> None:
        rec = self._rec
        match msg:
            case wire.RealtimeInput():
                await self._on_realtime(msg)
            case wire.ClientContent():
                rec.client_contents.append(msg.raw)
                rec.texts.extend(msg.texts)
                if msg.turn_complete:
                    self._queue.put_nowait("greeting")
            case wire.ToolResponse():
                for fr in msg.responses:
                    rec.tool_responses.append(fr.raw)
                    self._answer(fr)
            case wire.Setup():
                raise wire.WireError("setup may only be sent once.")
            case wire.Other():
                rec.log("ignored:" + ",".join(msg.keys))

    async def _on_realtime(self, msg: wire.RealtimeInput) -> None:
        rec, now = self._rec, time.monotonic()
        for chunk in msg.audio:
            samples = np.frombuffer(chunk.pcm[: len(chunk.pcm) // 2 * 2], dtype="<i2")
            rec.audio += chunk.pcm
            rec.audio_frames.append(AudioFrame(now, len(samples), chunk.rate))
            self._caller_samples += len(samples)
            if self._sc.continuous is not None:
                self._start_streaming()
            elif self._automatic_vad:
                for event in self._vad.feed(samples.astype(np.int16), chunk.rate):
                    await self._on_vad(event)
        if msg.text is not None:
            rec.texts.append(msg.text)
            self._queue.put_nowait("greeting")
        if msg.activity_start:
            rec.signals.append((now, "activity_start"))
            if not self._automatic_vad:
                await self._on_vad(VadEvent.SPEECH_START)
        if msg.activity_end:
            rec.signals.append((now, "activity_end"))
            if not self._automatic_vad:
                await self._on_vad(VadEvent.SPEECH_END)
        if msg.audio_stream_end:
            # Under automatic VAD the client sends this when its input pauses: the
            # caller's turn ends now rather than after silence that will never come.
            rec.signals.append((now, "audio_stream_end"))
            for event in self._vad.flush():
                await self._on_vad(event)

    def _start_streaming(self) -> None:
        """Continuous mode: the model starts talking at the caller's first audio."""
        if self._streaming or self._sc.continuous is None:
            return
        self._streaming = True

        def turn_done() -> None:
            self._rec.turns_completed += 1

        task = asyncio.create_task(stream_forever(self._send, self._sc.continuous, turn_done))
        self._tasks.add(task)

    async def _on_vad(self, event: VadEvent) -> None:
        self._rec.log(event.value)
        if event is VadEvent.SPEECH_START:
            if self._sc.instant:
                self._queue.put_nowait("turn")
            elif self._barge_in and self._in_window():
                await self._interrupt()
        elif not self._sc.instant:
            self._queue.put_nowait("turn")

    def _answer(self, fr: wire.FunctionResponse) -> None:
        call_id = fr.id or ""
        if not call_id:
            # An id-less call is answered by name (the first such call of that name).
            call_id = next(
                (i for i, c in self._pending.items() if c.spec.omit_id and c.spec.name == fr.name),
                "",
            )
        call = self._pending.pop(call_id, None)
        if call is None:
            self._rec.log(f"unexpected_tool_response:{fr.id}")
            return
        if not call.future.done():
            call.future.set_result(fr.response)
        self._check(call_id, call.spec, fr.response, "answered")

    def _check(
        self, call_id: str, spec: ToolCallSpec, response: dict[str, Any] | None, outcome: str
    ) -> None:
        expect = spec.expect
        passed = response is not None and (expect is None or contains(response, expect))
        self._rec.tool_checks.append(
            ToolCheck(call_id, spec.name, expect, response, passed, outcome)
        )

    # --- barge-in -------------------------------------------------------------------

    def _in_window(self) -> bool:
        return self._window_open or time.monotonic() < self._playback_until

    async def _interrupt(self) -> None:
        """The caller spoke over the model: stop, say so, cancel its pending calls."""
        self._rec.interruptions += 1
        self._rec.log("interrupted")
        self._playback_until = 0.0
        playing = self._current is not None and not self._current.done()
        if self._current is not None and playing:
            self._current.cancel()
            await asyncio.wait([self._current])
        self._window_open = False
        await self._send(wire.server_content(interrupted=True))
        if self._pending:
            ids = list(self._pending)
            for call_id, call in self._pending.items():
                self._check(call_id, call.spec, None, "cancelled")
            self._pending.clear()
            await self._send(wire.tool_call_cancellation(ids))
        if playing:
            self._add_transcript("model", self._current_text, interrupted=True)
        elif self._conv.transcript and self._conv.transcript[-1].role == "model":
            self._conv.transcript[-1].interrupted = True  # cut off while still playing

    # --- replies --------------------------------------------------------------------

    async def _respond_loop(self) -> None:
        try:
            await self._respond_forever()
        except Exception as exc:
            # A bug in the fake must fail the test loudly, not hang it: close with 1011
            # and keep the cause in the record.
            self._rec.log(f"server_error:{exc!r}")
            await self._close("server_error", 1011, "Internal error encountered.")
            raise

    async def _respond_forever(self) -> None:
        while True:
            trigger = await self._queue.get()
            if self._sc.continuous is not None:
                continue  # the model is already talking, and never stops
            if trigger == "greeting":
                reply, caller_text = self._sc.greeting, None
            else:
                reply = self._sc.reply_for_turn(self._conv.next_turn)
                self._conv.next_turn += 1
                caller_text = reply.caller_text
            self._current_text = reply.transcript
            self._current = asyncio.create_task(self._reply(reply, caller_text))
            # asyncio.wait, not await: a barge-in cancels the reply, and that must not
            # look like (or swallow) a cancellation of this loop.
            await asyncio.wait([self._current])
            raise_unexpected(self._current)

    async def _reply(self, reply: Reply, caller_text: str | None) -> None:
        rec, faults = self._rec, self._sc.faults
        if caller_text is not None:
            await self._send(wire.server_content(input_text=caller_text))
            self._add_transcript("caller", caller_text)
        for message in reply.raw:
            await self._send(message)
        if faults.stall_after_turns == rec.turns_completed and self._fires("stall"):
            rec.log("stall")
            await asyncio.sleep(faults.stall_seconds)
        self._window_open = True
        try:
            await self._call_tools(reply.tool_calls)
            if not await self._play(reply):
                return
        finally:
            self._window_open = False
        await self._after_turn()

    async def _call_tools(self, specs: tuple[ToolCallSpec, ...]) -> None:
        if not specs:
            return
        loop = asyncio.get_running_loop()
        calls: list[tuple[str, _PendingCall]] = []
        for spec in specs:
            call_id = spec.id or self._shared.tool_call_id()
            calls.append((call_id, _PendingCall(spec, loop.create_future())))
        self._pending.update(calls)
        await self._send(
            wire.tool_call(
                [(None if c.spec.omit_id else i, c.spec.name, c.spec.args) for i, c in calls]
            )
        )
        self._rec.log("tool_call")
        blocking = [(i, c) for i, c in calls if c.spec.blocking]
        if not blocking:
            return
        _, waiting = await asyncio.wait(
            [c.future for _, c in blocking], timeout=self._sc.tool_response_timeout
        )
        for call_id, call in blocking:
            if call.future in waiting:
                self._pending.pop(call_id, None)
                self._check(call_id, call.spec, None, "timeout")

    async def _play(self, reply: Reply) -> bool:
        """Stream the reply's audio and transcript; False if a fault cut it short."""
        audio_cfg = self._sc.audio
        pcm = load_clip(reply.clip, wire.OUTPUT_RATE) if reply.clip else np.zeros(0, np.int16)
        step = wire.OUTPUT_RATE * audio_cfg.chunk_ms // 1000
        chunks = [pcm[i : i + step].tobytes() for i in range(0, len(pcm), step)] or [b""]
        texts = fragments(reply.transcript, len(chunks))
        duration = len(pcm) / wire.OUTPUT_RATE
        start = time.monotonic()
        self._playback_until = start + duration + self._sc.barge_in.margin_ms / 1000
        cut_at = len(chunks) // 2 if self._mid_reply_fault() else None
        for i, chunk in enumerate(chunks):
            if i == cut_at:
                await self._close_fault()
                return False
            if audio_cfg.speed > 0:
                due = start + i * audio_cfg.chunk_ms / 1000 / audio_cfg.speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._send_chunk(chunk, texts.get(i), last=i == len(chunks) - 1, dur=duration)
        self._add_transcript("model", reply.transcript)
        return True

    async def _send_chunk(self, chunk: bytes, text: str | None, *, last: bool, dur: float) -> None:
        audio = chunk or None
        usage = wire.usage_metadata(
            10 + self._caller_samples * TOKENS_PER_SECOND // wire.INPUT_RATE,
            round(dur * TOKENS_PER_SECOND),
            vertex=self._rec.vertex,
        )
        if self._sc.audio.bundle:
            message = wire.server_content(
                audio=audio,
                output_text=text,
                generation_complete=last,
                turn_complete=last,
                usage=usage if last else None,
            )
            await self._send(message)
            return
        if audio is not None:
            await self._send(wire.server_content(audio=audio))
        if text is not None:
            await self._send(wire.server_content(output_text=text))
        if last:
            await self._send(wire.server_content(generation_complete=True))
            await self._send(wire.server_content(turn_complete=True, usage=usage))

    async def _after_turn(self) -> None:
        rec, faults = self._rec, self._sc.faults
        rec.turns_completed += 1
        rec.log("turn_complete")
        self._caller_samples = 0
        if self._resumable:
            handle = self._shared.issue_handle(self._conv)
            rec.handles_sent.append(handle)
            await self._send(wire.session_resumption_update(handle))
        if faults.go_away_after_turns == rec.turns_completed and self._fires("go_away"):
            rec.log("go_away")
            await self._send(wire.go_away(faults.go_away_time_left))
            task = asyncio.create_task(self._go_away_close(faults.go_away_time_left))
            self._tasks.add(task)
        if (
            faults.close_after_turns == rec.turns_completed
            and not faults.close_mid_reply
            and self._fires("close")
        ):
            await self._close_fault()

    def _mid_reply_fault(self) -> bool:
        faults = self._sc.faults
        return (
            faults.close_mid_reply
            and faults.close_after_turns == self._rec.turns_completed
            and self._fires("close")
        )

    def _fires(self, name: str) -> bool:
        return self._shared.fault_fires(name, self._sc.faults.repeat)

    def _add_transcript(self, role: str, text: str, interrupted: bool = False) -> None:
        self._conv.transcript.append(TranscriptLine(role, text, interrupted))

    # --- closing --------------------------------------------------------------------

    async def _go_away_close(self, delay: float) -> None:
        await asyncio.sleep(delay)
        code = self._sc.faults.go_away_close_code
        await self._close("go_away", code, "")

    async def _close_fault(self) -> None:
        faults = self._sc.faults
        if faults.drop_tcp:
            self._rec.log("drop_tcp")
            self._rec.finish("dropped", None, None)
            self._ws.transport.abort()
            return
        await self._close("server_closed", faults.close_code, faults.close_reason)

    async def _close(self, ended: str, code: int, reason: str) -> None:
        self._rec.log(f"close:{code}")
        # A close frame is a control frame: its reason must fit in 123 UTF-8 bytes.
        reason = reason.encode()[:123].decode(errors="ignore")
        self._rec.finish(ended, code, reason)
        await self._ws.close(code, reason)

    async def _send(self, message: dict[str, Any]) -> None:
        text = wire.encode(message)
        await self._ws.send(text.encode() if self._sc.frame_type == "binary" else text)
