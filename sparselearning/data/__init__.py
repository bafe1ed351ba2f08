"""Datasets held whole in memory as uint8 images plus int64 labels, and batching over them."""
