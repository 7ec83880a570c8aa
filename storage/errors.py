"""The storage error hierarchy: every failure a caller may want to handle has its own class.

Two families under `StoreError` call for opposite reactions:
- `BadContent`: the bytes are unacceptable (too large, not matching their CID, not a valid snapshot).
  It is the sender's fault and retrying returns the same bytes: skip them, count it against the peer.
- `StoreUnavailable`: the store could not be reached or did not answer in time. Nothing is known
  about the content: retry later or redial, and do not blame the peer.
Other `StoreError`s (content not held, a refused request, a malformed CID argument) are neither.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every storage failure; the message says what to do."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (e.g. no IPFS daemon answers at the API address)."""


class BadContent(StoreError):
    """Bytes that will never be acceptable, whoever serves them: skip them and penalise the sender."""


class ContentNotFound(StoreError):
    """The store does not hold the requested CID (and could not fetch it)."""


class FetchTimeout(StoreUnavailable, ContentNotFound):
    """Fetching a CID took longer than the allowed time (peers holding it may be gone)."""


class ContentTooLarge(BadContent):
    """The content is larger than the caller's size cap."""


class CidMismatch(BadContent):
    """The bytes received do not hash to the CID that was asked for."""


class InvalidCid(StoreError, ValueError):
    """A string that is not a valid CID was passed where one is expected."""


class SnapshotError(BadContent, ValueError):
    """A snapshot cannot be encoded or decoded: malformed, corrupted, hostile or unsupported."""
