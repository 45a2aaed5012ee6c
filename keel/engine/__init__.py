"""Engines that turn tokens into logits: the embedded llama.cpp one and the opt-in fallback."""
