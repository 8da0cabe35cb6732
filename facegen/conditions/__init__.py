"""Conditions: landmark topology/template/pose/rendering, emotion vectors, identity embeddings."""
