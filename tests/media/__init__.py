"""Fetching what a request names, safely."""
