"""Audio decoding with limits, and safe URL fetching."""
