"""Token encoders: models that turn a packed batch of token ids into token states."""

from .base import PackedBatch, TokenEncoder

__all__ = ["PackedBatch", "TokenEncoder"]
