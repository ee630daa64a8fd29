"""Text-to-speech (SpeechT5, Bark) and voice cloning (CSM)."""
