"""Helpers to test your own rxsse streams: over real sockets (:func:`serve`, the pytest
plugin's fixtures), and in virtual time (:func:`run_virtual`)."""

from ._server import EventReader, LiveServer, LiveSubscriptions, serve, wait_until
from ._virtual import Expected, Frame, VirtualStream, expect_frames, run_virtual

__all__ = [
    "EventReader",
    "Expected",
    "Frame",
    "LiveServer",
    "LiveSubscriptions",
    "VirtualStream",
    "expect_frames",
    "run_virtual",
    "serve",
    "wait_until",
]
