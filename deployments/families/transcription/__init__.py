"""Speech-to-text (Whisper)."""
