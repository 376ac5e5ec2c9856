"""Models: the zoo, the user's own files or factories, and the backends that run them."""
