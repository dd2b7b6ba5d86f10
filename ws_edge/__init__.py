"""The edge (Tornado: the WebSocket, the HTTP API and the dashboard on one port) and the Python
client that talks to it."""

from scrapeledger.errors import ClientError, ClientTimeoutError, EdgeUnreachableError, UnauthorizedError

from ._client import Client
from ._endpoint import edge_url
from ._job import JobSpec
from ._protocol import JobRequest, ResumeRequest, parse_frame, result_fields, result_frame
from ._server import Edge, serve

__all__ = [
    "Client",
    "ClientError",
    "ClientTimeoutError",
    "Edge",
    "EdgeUnreachableError",
    "JobRequest",
    "JobSpec",
    "ResumeRequest",
    "UnauthorizedError",
    "edge_url",
    "parse_frame",
    "result_fields",
    "result_frame",
    "serve",
]
