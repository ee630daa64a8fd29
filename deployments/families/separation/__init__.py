"""Source separation (Demucs): batched chunked inference and loading of Demucs' Hugging Face format."""
