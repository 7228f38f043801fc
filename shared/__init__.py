"""MusicHal shared foundation: ring buffer, messages, config, model container, audio front end."""
