"""Who may do what: API keys, browser sessions, visibility, shared rate limits."""
