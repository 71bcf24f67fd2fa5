"""Pro Santé Connect simulator (OpenID Connect provider, CIBA, token exchange)."""
