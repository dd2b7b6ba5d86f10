"""The WebSocket edge (Tornado) and the Python client that talks to it."""

from ._client import Client, ClientError
from ._protocol import JobRequest, ResumeRequest, parse_frame, result_frame
from ._server import Edge, serve

__all__ = [
    "Client",
    "ClientError",
    "Edge",
    "JobRequest",
    "ResumeRequest",
    "parse_frame",
    "result_frame",
    "serve",
]
