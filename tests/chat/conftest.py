"""The chat tests' fixtures live in ``tests/chat_support.py`` (shared with tests/api/test_chat_api.py)."""

from chat_support import chat_embedder, gift_shop, scripted

__all__ = ["chat_embedder", "gift_shop", "scripted"]
