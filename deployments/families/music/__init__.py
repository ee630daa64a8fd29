"""Text-to-music (MusicGen) with LoRA adapters."""
