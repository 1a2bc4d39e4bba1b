"""Shared by both interop scripts: a connection that counts the pings its
peer sends (for the heartbeat scenarios).

websockets answers pings itself and does not tell the application; this hooks
the pinned version's frame dispatch to count them, then lets websockets do its
normal work (the pong)."""

from websockets.frames import Opcode


class PingCounting:
    """Mix in before a websockets connection class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pings_received = 0

    def process_event(self, event):
        if getattr(event, "opcode", None) is Opcode.PING:
            self.pings_received += 1
        super().process_event(event)
