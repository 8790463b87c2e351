"""Typed httpx client of the Reflexio REST API (reflexio-ai 0.2.32). Does not import Prefect."""

from reflexio_api.client import ReflexioClient
from reflexio_api.errors import (
    AuthError,
    ClientError,
    ConfigurationError,
    IncompleteListing,
    OperationInProgress,
    OperationReplaced,
    OperationTimeout,
    ReflexioError,
    ServerReportedFailure,
    TransientError,
    UnexpectedPayload,
    is_retryable,
)
from reflexio_api.settings import ReflexioSettings
from reflexio_api.waiting import PollPolicy

__all__ = [
    "AuthError",
    "ClientError",
    "ConfigurationError",
    "IncompleteListing",
    "OperationInProgress",
    "OperationReplaced",
    "OperationTimeout",
    "PollPolicy",
    "ReflexioClient",
    "ReflexioError",
    "ReflexioSettings",
    "ServerReportedFailure",
    "TransientError",
    "UnexpectedPayload",
    "is_retryable",
]
