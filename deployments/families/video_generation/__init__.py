"""Text-to-video and image-to-video (diffusers), as jobs."""
