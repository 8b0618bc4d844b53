"""Retrieval: embedders (offline default, OpenAI-compatible) and the Chroma-backed vector index."""

from vectorstore.embedders import Embedder, OfflineEmbedder, OpenAIEmbedder, TextModel
from vectorstore.store import Hit, VectorIndex, make_client

__all__ = ["Embedder", "Hit", "OfflineEmbedder", "OpenAIEmbedder", "TextModel", "VectorIndex", "make_client"]
