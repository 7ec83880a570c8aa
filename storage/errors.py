"""The storage error hierarchy: every failure a caller may want to handle has its own class."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every storage failure; the message says what to do."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (e.g. no IPFS daemon answers at the API address)."""


class ContentNotFound(StoreError):
    """The store does not hold the requested CID (and could not fetch it)."""


class FetchTimeout(ContentNotFound):
    """Fetching a CID took longer than the allowed time (peers holding it may be gone)."""


class ContentTooLarge(StoreError):
    """The content is larger than the caller's size cap."""


class CidMismatch(StoreError):
    """The bytes received do not hash to the CID that was asked for."""


class InvalidCid(StoreError, ValueError):
    """A string that is not a valid CID was passed where one is expected."""


class SnapshotError(StoreError, ValueError):
    """A snapshot cannot be encoded or decoded: malformed, corrupted, hostile or unsupported."""
