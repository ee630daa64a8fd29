"""Each model family's routes and deployment, as a user calls them."""
