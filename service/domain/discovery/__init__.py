""" "Sounds like this": nearest latents, cursors, segment search, clusters and the map."""
