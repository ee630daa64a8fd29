"""Text-to-image and inpainting (diffusers)."""
